"""Direct gradients (kamoe_viz.nn.fast.direct_grad): the same loss and gradients as autograd for every model they cover,
every parameter's gradient written on every step, autograd for what they do not cover, and the same training."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from direct_grad_helpers import assert_same, autograd_and_direct, dataset, kernel_choice, native_library, trainer_path
from hypothesis import given, settings
from hypothesis import strategies as st

from kamoe_viz.config import ModelConfig, TrainConfig
from kamoe_viz.nn import build_model
from kamoe_viz.nn.fast import native
from kamoe_viz.nn.fast.direct_grad import SWITCH_ENV, DirectGradients, unsupported_reason
from kamoe_viz.training import fit
from kamoe_viz.training.trainer import Trainer

built = pytest.fixture(scope="module")(native_library)
kernel = pytest.fixture(params=["kernel", "pytorch"])(kernel_choice)


@pytest.mark.parametrize("gate", ["linear", "grn", "grkan"])
@pytest.mark.parametrize("activation", ["sigmoid", "softmax"])
@pytest.mark.parametrize("expert,hidden", [("mlp", (6,)), ("mlp", (7, 5, 4)), ("kan", (5,)), ("kan", (4, 3))])
def test_same_loss_and_gradients_as_autograd(kernel, gate, activation, expert, hidden):
    data = dataset()
    torch.manual_seed(1)
    model = build_model(
        ModelConfig(gate=gate, gate_activation=activation, expert=expert, expert_hidden=hidden, n_experts=3), data
    )
    assert_same(*autograd_and_direct(model, data, kernel))


@pytest.mark.parametrize(
    "config",
    [
        dict(kind="standard"),
        dict(kind="standard", expert="kan", expert_hidden=(4, 2)),
        dict(input_scaling=False),
        dict(input_scaling=False, expert="kan", gate="grn"),
        dict(gate_hidden=2, n_experts=4),  # a gate input narrower than the gate: the transposed products
        dict(n_experts=1),
        dict(gate="grkan", grkan_second_base="silu", kan_grid=5, kan_order=2),
        dict(expert="kan", kan_base="silu", kan_order=1, kan_range=(-2.0, 3.0)),
    ],
)
def test_other_model_settings(kernel, config):
    data = dataset(features=10)
    torch.manual_seed(2)
    model = build_model(ModelConfig(**{"expert_hidden": (6,), **config}), data)
    assert_same(*autograd_and_direct(model, data, kernel))


@pytest.mark.parametrize("expert", ["mlp", "kan"])
def test_classification_and_windows(kernel, expert):
    torch.manual_seed(3)
    for data in (dataset("classification", classes=4), dataset(seq_len=5, features=3)):
        model = build_model(ModelConfig(expert=expert, expert_hidden=(5,)), data)
        assert_same(*autograd_and_direct(model, data, kernel))
    # experts narrower than the classes (the head's transposed products), standard and mixture
    for kind in ("standard", "moe"):
        model = build_model(
            ModelConfig(kind=kind, expert=expert, expert_hidden=(2,)), dataset("classification", classes=6)
        )
        assert_same(*autograd_and_direct(model, data=dataset("classification", classes=6), lib=kernel))
    # windows with input scaling, deeper experts and a softmax GRKAN gate
    windows = dataset(seq_len=4, features=3)
    model = build_model(ModelConfig(expert=expert, expert_hidden=(5, 3), gate_activation="softmax"), windows)
    assert_same(*autograd_and_direct(model, windows, kernel))


@pytest.mark.parametrize("expert,hidden", [("mlp", (6,)), ("mlp", (5, 3)), ("kan", (4,)), ("kan", (4, 3))])
@pytest.mark.parametrize(
    "gate,routing,shared", [("linear", "dense", 1), ("grkan", "dense", 2), ("grn", "topk", 1), ("grkan", "switch", 2)]
)
def test_shared_experts_equal_autograd(kernel, expert, hidden, gate, routing, shared):
    """Shared (always-on) experts beside the routed ones: each enters the mix with weight 1, so every shared
    expert's gradient is the mix's, and dL/dx~ gathers the routed, shared and gate contributions."""
    torch.manual_seed(7)
    for data in (dataset(), dataset(seq_len=3, features=2)):
        model = build_model(
            ModelConfig(
                gate=gate,
                expert=expert,
                expert_hidden=hidden,
                routing=routing,
                shared_experts=shared,
                n_experts=3,
                top_k=2 if routing == "topk" else 0,
            ),
            data,
        )
        assert model.shared is not None and unsupported_reason(model, data.task, kernel) is None
        assert_same(*autograd_and_direct(model, data, kernel))


@settings(max_examples=25, deadline=None)
@given(
    rows=st.integers(1, 40),
    features=st.integers(1, 12),
    experts=st.integers(1, 5),
    width=st.integers(1, 24),
    gate=st.sampled_from(["linear", "grn", "grkan"]),
    expert=st.sampled_from(["mlp", "kan"]),
    seed=st.integers(0, 2**16),
)
def test_any_shape(rows, features, experts, width, gate, expert, seed):
    data = dataset(features=features, rows=64, seed=seed)
    native.build()  # loaded here whatever ran before (None without a compiler: then the PyTorch path only)
    for lib in {native.library(), None}:
        torch.manual_seed(seed)
        model = build_model(ModelConfig(gate=gate, expert=expert, expert_hidden=(width,), n_experts=experts), data)
        assert_same(*autograd_and_direct(model, data, lib, rows=rows))


def test_what_is_left_to_autograd(kernel, monkeypatch):
    tabular, windows = dataset(), dataset(seq_len=4, features=3)
    cases = {
        "lstm experts": (ModelConfig(expert="lstm", expert_hidden=(4,)), windows),
        "gate dropout": (ModelConfig(dropout=0.2, expert_hidden=(4,)), tabular),
    }
    for reason, (config, data) in cases.items():
        model = build_model(config, data)
        assert unsupported_reason(model, data.task, kernel) == reason
        with pytest.raises(ValueError, match=reason):
            DirectGradients(model, data.task, kernel)
    grkan = build_model(ModelConfig(gate="grkan", expert="kan", expert_hidden=(4,)), tabular)
    assert unsupported_reason(grkan, "regression", kernel) is None
    grkan.head.weight.requires_grad_(False)
    assert unsupported_reason(grkan, "regression", kernel) == "some parameters are frozen"
    grkan.head.weight.requires_grad_(True)
    assert unsupported_reason(grkan.double(), "regression", kernel) == "the model is not on the CPU in float32"
    grkan.float()
    monkeypatch.setenv(SWITCH_ENV, "0")
    assert unsupported_reason(grkan, "regression", kernel) == f"{SWITCH_ENV}=0"


def test_a_non_uniform_grid_goes_through_autograd_for_that_step(kernel, monkeypatch):
    trainer_path(kernel, monkeypatch)
    data = dataset()
    model = build_model(ModelConfig(gate="grkan", expert_hidden=(4,)), data)
    trainer = Trainer(model, data, TrainConfig(epochs=2, batch_size=16))
    assert trainer.gradient_path == "direct"
    layer = model.gate.kan1
    with torch.no_grad():  # stretch one knot: no longer uniform
        layer.grid[0, -1] += 0.5
        layer.grid_is_uniform.fill_(False)
    x, y = torch.as_tensor(data.X_train[:8]), torch.as_tensor(data.y_train[:8])
    before = [p.grad.clone() for p in model.parameters()]
    assert trainer.stepper.direct.step(x, y) is None
    assert all(torch.equal(a, p.grad) for a, p in zip(before, model.parameters()))  # nothing touched
    trainer.run_epochs(2)  # every step through autograd, and training goes on
    assert trainer.epoch == 2 and np.isfinite(trainer.history()["train_loss"]).all()


@pytest.mark.parametrize(
    "config,train",
    [
        (ModelConfig(gate="grkan", expert="mlp", n_experts=3, expert_hidden=(8,)), {}),
        (ModelConfig(gate="grn", expert="kan", n_experts=2, expert_hidden=(5,)), {}),
        # clipping, weight decay, and KAN grids moved to the data between bursts (knots change in place)
        (
            ModelConfig(gate="grkan", expert="kan", n_experts=2, expert_hidden=(4, 3)),
            dict(max_grad_norm=0.05, weight_decay=1e-3),
        ),
    ],
)
def test_training_agrees_with_autograd(kernel, monkeypatch, config, train):
    """Same seed, either gradient path: the same training to float rounding (no accuracy cost)."""
    trainer_path(kernel, monkeypatch)
    data = dataset(rows=240)
    histories, paths = [], []
    for switch in ("1", "0"):
        monkeypatch.setenv(SWITCH_ENV, switch)
        torch.manual_seed(0)
        model = build_model(config, data)
        trainer = Trainer(model, data, TrainConfig(epochs=4, batch_size=32, seed=0, **train))
        paths.append(trainer.gradient_path)
        while not trainer.done:
            trainer.run_epochs(1)
            if train and not trainer.done:
                with torch.no_grad():
                    for name, inputs in model.kan_layer_inputs(torch.as_tensor(data.X_train)).items():
                        {ref.name: ref.layer for ref in model.kan_layers()}[name].update_grid(inputs)
        histories.append(trainer.finish().history[["train_loss", "val_loss"]].to_numpy())
    assert paths == ["direct", "autograd"]
    np.testing.assert_allclose(histories[0], histories[1], rtol=1e-4)


def test_divergence_and_best_weights_as_with_autograd(kernel, monkeypatch):
    """A run that diverges stops in the same epoch with the same message and keeps the same best weights."""
    trainer_path(kernel, monkeypatch)
    outcomes = []
    for switch in ("1", "0"):
        data = dataset(rows=240)  # the trainer's tensors share the arrays' memory: fresh data for each run
        monkeypatch.setenv(SWITCH_ENV, switch)
        torch.manual_seed(0)
        model = build_model(ModelConfig(expert_hidden=(6,)), data)
        trainer = Trainer(model, data, TrainConfig(epochs=6, batch_size=32, seed=0))
        trainer.run_epochs(3)
        trainer._X[5, 1] = float("inf")  # one corrupt training value: epoch 4's loss is not finite
        trainer.run_epochs(3)
        result = trainer.finish()
        outcomes.append(
            (
                result.stopped_reason,
                result.best_epoch,
                result.epochs_run,
                [p.detach().clone() for p in model.parameters()],
            )
        )
    (reason_d, best_d, epochs_d, weights_d), (reason_a, best_a, epochs_a, weights_a) = outcomes
    assert reason_d == reason_a == "diverged" and (best_d, epochs_d) == (best_a, epochs_a) and epochs_d == 3
    for a, b in zip(weights_d, weights_a):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


def test_gradients_that_are_not_contiguous_are_replaced(kernel):
    data = dataset()
    model = build_model(ModelConfig(expert="kan", expert_hidden=(4,)), data)
    layer = model.gate.kan1
    layer.base_weight.grad = torch.zeros(layer.base_weight.shape[::-1]).t()  # a transposed view
    expected, got = autograd_and_direct(model, data, kernel)
    assert_same(expected, got)
    assert layer.base_weight.grad.is_contiguous()


def test_fit_uses_direct_gradients_where_they_apply(kernel, monkeypatch):
    trainer_path(kernel, monkeypatch)
    data = dataset()
    trainer = Trainer(build_model(ModelConfig(expert_hidden=(4,)), data), data, TrainConfig(epochs=1))
    assert (trainer.gradient_path, trainer.gradient_path_reason) == ("direct", None)
    for model, train, reason in [
        (ModelConfig(expert_hidden=(4,), top_k=2), TrainConfig(epochs=1), None),  # routers: closed form too
        (ModelConfig(expert_hidden=(4,)), TrainConfig(epochs=1, balance_loss=0.1, gate_lr_scale=5.0), None),
        (ModelConfig(expert_hidden=(4,)), TrainConfig(epochs=1, objective="likelihood"), None),
        (ModelConfig(expert_hidden=(4,), shared_experts=1), TrainConfig(epochs=1), None),
    ]:
        trainer = Trainer(build_model(model, data), data, train)
        expected = ("direct", None) if reason is None else ("autograd", reason)
        assert (trainer.gradient_path, trainer.gradient_path_reason) == expected
    result = fit(build_model(ModelConfig(expert_hidden=(4,)), data), data, TrainConfig(epochs=2, batch_size=16))
    assert result.epochs_run == 2 and np.isfinite(result.history["train_loss"]).all()
