"""Divergence guard: NaN/inf losses and exploding gradients stop training cleanly, keep the best weights, advise."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

torch.set_num_threads(1)

from test_training import same_state, state_of, tiny_config, tiny_dataset

from kamoe_viz.nn import build_model
from kamoe_viz.training import Trainer, fit, train_run
from kamoe_viz.training import step as step_module

ADVICE = ("lower the learning rate (currently", "scale the inputs", "gradient clipping")


def assert_advice(message: str, lr: float) -> None:
    low = message.lower()
    for part in ADVICE:
        assert part in low, message
    assert f"(currently {lr:g})" in message


def test_huge_learning_rate_diverges_with_advice_and_initial_weights() -> None:
    ds = tiny_dataset()
    cfg = tiny_config(epochs=5, lr=10.0)
    torch.manual_seed(0)
    model = build_model(cfg.model, ds)
    initial = state_of(model)
    result = fit(model, ds, cfg.train)  # returned, not raised
    assert result.stopped_reason == "diverged" and result.diverged
    assert_advice(result.message, 10.0)
    assert "initial weights" in result.message and "epoch 1" in result.message
    assert same_state(state_of(model), initial)  # nothing finished: the untouched start is the best there is
    assert result.epochs_run == 0 and result.best_epoch is None and len(result.history) == 0
    assert all(math.isfinite(v) for v in result.metrics.values())


def test_train_run_returns_diverged_run() -> None:
    run = train_run(tiny_config(epochs=5, lr=10.0), tiny_dataset())
    assert run.result.stopped_reason == "diverged" and run.result.message
    assert np.isfinite(run.result.metrics["r2"])


def test_inf_injected_mid_training_keeps_best_weights() -> None:
    ds = tiny_dataset()
    cfg = tiny_config(epochs=10)
    torch.manual_seed(0)
    model = build_model(cfg.model, ds)
    best_states: dict[int, dict[str, torch.Tensor]] = {}
    trainer: Trainer

    def on_epoch(info) -> None:
        if info.best_epoch == info.epoch:
            best_states[info.epoch] = state_of(model)
        if info.epoch == 3:
            trainer._X[5, 1] = float("inf")  # corrupt one training value: epoch 4's loss becomes inf/NaN

    trainer = Trainer(model, ds, cfg.train, on_epoch=on_epoch)
    while not trainer.done:
        trainer.run_epochs(2)
    result = trainer.finish()
    assert result.stopped_reason == "diverged" and result.epochs_run == 3
    assert "epoch 4" in result.message and "training loss became" in result.message
    assert f"epoch {result.best_epoch}" in result.message
    assert_advice(result.message, 1e-3)
    assert same_state(state_of(model), best_states[result.best_epoch])
    assert all(torch.isfinite(v).all() for v in state_of(model).values())
    assert result.history["epoch"].tolist() == [1, 2, 3]


def test_inf_in_training_data_from_the_start() -> None:
    ds = tiny_dataset()
    ds.X_train = ds.X_train.copy()
    ds.X_train[17, 0] = np.inf
    result = train_run(tiny_config(epochs=3), ds).result
    assert result.stopped_reason == "diverged" and "epoch 1" in result.message


def test_inf_in_validation_data() -> None:
    ds = tiny_dataset()
    ds.X_val = ds.X_val.copy()
    ds.X_val[0, 2] = -np.inf
    result = train_run(tiny_config(epochs=3), ds).result
    assert result.stopped_reason == "diverged" and "validation loss" in result.message
    assert "scale the inputs" in result.message


def test_exploding_gradient_threshold(monkeypatch: pytest.MonkeyPatch) -> None:
    ds = tiny_dataset()
    monkeypatch.setattr(step_module, "GRAD_NORM_LIMIT", 1e-9)
    result = train_run(tiny_config(epochs=3), ds).result
    assert result.stopped_reason == "diverged" and "gradient norm exploded" in result.message
    # with clipping on, large gradients are clipped rather than treated as divergence
    clipped = train_run(tiny_config(epochs=3, max_grad_norm=1.0), ds).result
    assert clipped.stopped_reason == "completed" and clipped.epochs_run == 3


def test_clipping_advice_when_already_clipping() -> None:
    ds = tiny_dataset()
    ds.X_train = ds.X_train.copy()
    ds.X_train[3, 1] = np.nan
    result = train_run(tiny_config(epochs=3, max_grad_norm=5.0), ds).result
    assert result.stopped_reason == "diverged"
    assert "clip gradients harder (train.max_grad_norm, currently 5)" in result.message


@pytest.mark.parametrize(
    ("value", "expected"), [(None, False), ("0", False), ("off", False), ("1", True), (" ON ", True), ("yes", True)]
)
def test_cuda_graphs_are_opt_in(value: str | None, expected: bool, monkeypatch) -> None:
    from kamoe_viz.nn.fast.cuda_graph import ENV_SWITCH, graphs_enabled

    if value is None:
        monkeypatch.delenv(ENV_SWITCH, raising=False)
    else:
        monkeypatch.setenv(ENV_SWITCH, value)
    assert graphs_enabled(torch.device("cuda")) is expected
    assert graphs_enabled(torch.device("cpu")) is False  # never on the CPU, whatever the switch says


def test_allocator_tuning_applies_on_glibc_and_can_be_switched_off(monkeypatch):
    import sys

    from kamoe_viz.training import tune_allocator

    monkeypatch.setenv("KAMOE_MALLOC_TUNING", "0")
    assert tune_allocator() is False
    monkeypatch.delenv("KAMOE_MALLOC_TUNING")
    assert tune_allocator() is sys.platform.startswith("linux")
