"""The step's one choice point (kamoe_viz.training.step): the switch that turns every fast path off trains like
the fast paths, and uses none of them; a diverging run can raise TrainingDivergedError."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from kamoe_viz.config import ModelConfig, TrainConfig
from kamoe_viz.errors import TrainingDivergedError
from kamoe_viz.nn import build_model
from kamoe_viz.nn.fast import FAST_ENV, enabled, native, plain_autograd
from kamoe_viz.nn.fast.optim import FastAdam
from kamoe_viz.training.trainer import Trainer
from tests.test_training import tiny_dataset


def _train(config: ModelConfig, train: TrainConfig, data) -> tuple[Trainer, np.ndarray]:
    torch.manual_seed(0)
    trainer = Trainer(build_model(config, data), data, train)
    while not trainer.done:
        trainer.run_epochs(1)
    return trainer, trainer.finish().history[["train_loss", "val_loss"]].to_numpy()


@pytest.mark.parametrize(
    "config,train",
    [
        (ModelConfig(gate="grkan", expert="kan", n_experts=3, expert_hidden=(4,)), {}),
        (
            ModelConfig(gate="grn", expert="mlp", n_experts=3, expert_hidden=(8,), routing="switch"),
            dict(balance_loss=0.01, gate_lr_scale=3.0),
        ),
    ],
)
def test_plain_autograd_trains_like_the_fast_paths(config, train, monkeypatch):
    native.build()
    data = tiny_dataset(n=200)
    cfg = TrainConfig(epochs=3, batch_size=32, seed=0, device="cpu", **train)
    fast_trainer, fast = _train(config, cfg, data)
    monkeypatch.setenv(FAST_ENV, "0")
    assert not enabled()
    plain_trainer, plain = _train(config, cfg, tiny_dataset(n=200))
    assert plain_trainer.gradient_path == "autograd" and plain_trainer.gradient_path_reason.startswith(FAST_ENV)
    assert not plain_trainer.native_kernel and not plain_trainer.use_graphs
    assert isinstance(plain_trainer.optimizer, torch.optim.Adam)
    if native.status().state == "ready":  # the fast run did use what the plain one left out
        assert fast_trainer.native_kernel
    assert not isinstance(fast_trainer.optimizer, torch.optim.Adam)
    np.testing.assert_allclose(plain, fast, rtol=2e-4, atol=1e-6)
    if train.get("gate_lr_scale"):  # the gate's own learning rate survives the switch
        lrs = [g["lr"] for g in plain_trainer.optimizer.param_groups]
        assert lrs[1] == pytest.approx(3.0 * lrs[0])


def test_plain_autograd_block_turns_the_kernel_off_for_modules():
    native.build()
    data = tiny_dataset()
    model = build_model(ModelConfig(gate="grkan", expert="kan", expert_hidden=(4,)), data)
    x = torch.as_tensor(data.X_train[:8])
    with plain_autograd():
        assert not enabled() and native.active() is None
        node = model(x).prediction.grad_fn
        names = set()
        stack = [node]
        while stack:
            fn = stack.pop()
            if fn is None or type(fn).__name__ in names:
                continue
            names.add(type(fn).__name__)
            stack.extend(f for f, _ in fn.next_functions)
        assert not any("NativeKAN" in n or "GRKANLogits" in n or "UniformKAN" in n for n in names)
        trainer = Trainer(model, data, TrainConfig(epochs=1, device="cpu"))
        assert trainer.gradient_path == "autograd" and not isinstance(trainer.optimizer, FastAdam)
    assert enabled()


def test_a_diverging_run_raises_when_asked_and_keeps_the_best_weights():
    data = tiny_dataset()
    torch.manual_seed(0)
    trainer = Trainer(
        build_model(ModelConfig(expert_hidden=(6,)), data),
        data,
        TrainConfig(epochs=6, batch_size=32, seed=0, device="cpu"),
        raise_on_divergence=True,
    )
    trainer.run_epochs(2)
    trainer._X[3, 0] = float("nan")  # epoch 3's loss is not finite
    with pytest.raises(TrainingDivergedError) as caught:
        trainer.run_epochs(4)
    error = caught.value
    assert error.epoch == 3 and error.best_epoch == trainer.best_epoch is not None
    assert "epoch 3" in str(error) and "Lower the learning rate" in str(error) and "training loss" in str(error)
    result = trainer.finish()  # still reports the weights kept
    assert result.stopped_reason == "diverged" and result.epochs_run == 2 and result.message == str(error)
    # without the flag the same run returns a diverged result
    data = tiny_dataset()  # the trainer's tensors share the arrays' memory: fresh data
    torch.manual_seed(0)
    quiet = Trainer(
        build_model(ModelConfig(expert_hidden=(6,)), data),
        data,
        TrainConfig(epochs=6, batch_size=32, seed=0, device="cpu"),
    )
    quiet.run_epochs(2)
    quiet._X[3, 0] = float("nan")
    quiet.run_epochs(4)
    assert quiet.stopped_reason == "diverged" and isinstance(quiet.error, TrainingDivergedError)
