"""Closed-form gradients of every router, the balance and z losses and the mixture likelihood objective equal
autograd's (kamoe_viz.nn.fast.direct_grad), and likelihood training takes the direct path with the same losses."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from direct_grad_helpers import assert_same, dataset, kernel_choice, native_library

from kamoe_viz.config import ModelConfig, TrainConfig
from kamoe_viz.nn import build_model
from kamoe_viz.nn.fast import native
from kamoe_viz.nn.fast.direct_grad import SWITCH_ENV, DirectGradients
from kamoe_viz.training import fit
from kamoe_viz.training.evaluation import task_loss
from kamoe_viz.training.trainer import Trainer

built = pytest.fixture(scope="module")(native_library)
kernel = pytest.fixture(params=["kernel", "pytorch"])(kernel_choice)


@pytest.mark.parametrize(
    "routing,top_k,activation",
    [
        ("topk", 1, "softmax"),
        ("topk", 2, "softmax"),
        ("topk", 2, "sigmoid"),
        ("noisy_topk", 1, "softmax"),
        ("noisy_topk", 2, "softmax"),
        ("switch", 0, "softmax"),
        ("expert_choice", 0, "softmax"),
        ("sigmoid_bias", 1, "sigmoid"),
        ("sigmoid_bias", 2, "sigmoid"),
        ("relu", 0, "sigmoid"),
        ("dense", 0, "softmax"),
        ("dense", 0, "sigmoid"),
    ],
)
def test_every_router_and_the_aux_losses_in_closed_form_equal_autograd(kernel, routing, top_k, activation):
    data = dataset()
    torch.manual_seed(5)
    model = build_model(
        ModelConfig(expert_hidden=(6,), routing=routing, gate_activation=activation, top_k=top_k, n_experts=4), data
    )
    if routing == "noisy_topk":  # a trained noise layer (it starts at zero, which would hide its share of dL/dlogits)
        with torch.no_grad():
            model.router.noise.weight.normal_(0, 0.5)
            model.router.noise.bias.normal_(0, 0.5)
    weights = {"balance_loss": 0.3, "z_loss": 0.05}
    x, y = torch.as_tensor(data.X_train[:40]), torch.as_tensor(data.y_train[:40])
    model.train()
    params = list(model.parameters())
    model.zero_grad()
    torch.manual_seed(9)  # noisy_topk draws its noise: the same draws on both paths
    with native.use(kernel is not None):
        out = model(x)
        loss = task_loss(data.task, out.prediction, y)
        total = loss + sum(
            w * {"balance_loss": out.aux["balance_loss"], "z_loss": out.aux["z_loss"]}[k] for k, w in weights.items()
        )
    total.backward()
    expected = (loss.detach(), [p.grad.clone() for p in params])
    for p in params:
        p.grad.fill_(float("nan"))
    direct = DirectGradients(model, data.task, kernel, weights)
    torch.manual_seed(9)
    with native.use(kernel is not None):
        got = direct.step(x, y)
    assert got is not None
    assert_same(expected, (got, [p.grad.clone() for p in params]))
    gate_grad = sum(float(p.grad.abs().sum()) for p in model.gate.parameters())
    assert gate_grad > 0


@pytest.mark.parametrize(
    "routing,top_k,activation,shared,expert",
    [
        ("dense", 0, "sigmoid", 0, "mlp"),
        ("dense", 0, "softmax", 0, "kan"),
        ("switch", 0, "softmax", 0, "mlp"),
        ("topk", 2, "softmax", 1, "kan"),
        ("noisy_topk", 1, "softmax", 0, "mlp"),
        ("sigmoid_bias", 1, "sigmoid", 0, "mlp"),
        ("expert_choice", 0, "softmax", 2, "mlp"),
        ("relu", 0, "sigmoid", 0, "kan"),
    ],
)
@pytest.mark.parametrize("task", ["regression", "classification"])
def test_the_likelihood_objective_in_closed_form_equals_autograd(
    kernel, routing, top_k, activation, shared, expert, task
):
    """The mixture likelihood (Objective, autograd) against DirectGradients(likelihood=True): the loss, every
    model parameter's gradient, log sigma's, and the balance / z losses on top, for the routers and shared experts."""
    from kamoe_viz.training.objectives import Objective, prepare_model

    data = dataset(task, classes=3)
    torch.manual_seed(11)
    config = TrainConfig(objective="likelihood", balance_loss=0.2, z_loss=0.01)
    model = prepare_model(
        build_model(
            ModelConfig(
                expert=expert,
                expert_hidden=(5,),
                routing=routing,
                top_k=top_k,
                gate_activation=activation,
                shared_experts=shared,
                n_experts=3,
            ),
            data,
        ),
        config,
    )
    objective = Objective(config, task)
    if objective.log_sigma is not None:
        objective.log_sigma.data.fill_(-0.3)  # away from 0, so a wrong sign or factor shows
    x, y = torch.as_tensor(data.X_train[:40]), torch.as_tensor(data.y_train[:40])
    model.train()
    params = list(model.parameters()) + list(objective.parameters())
    for p in params:
        p.grad = None
    torch.manual_seed(9)
    with native.use(kernel is not None):
        total, part = objective(model(x), y)
    total.backward()
    expected = (part.detach(), [p.grad.clone() for p in params])
    for p in params:
        p.grad.fill_(float("nan"))
    direct = DirectGradients(model, task, kernel, objective.weights, likelihood=True, log_sigma=objective.log_sigma)
    torch.manual_seed(9)
    with native.use(kernel is not None):
        got = direct.step(x, y)
    assert got is not None
    assert_same(expected, (got, [p.grad.clone() for p in params]))
    assert sum(float(p.grad.abs().sum()) for p in model.gate.parameters()) > 0


def test_likelihood_training_takes_the_direct_path_and_matches_autograd(monkeypatch):
    """A few epochs of Three-regimes-style training (likelihood, gate lr x5, balance loss) on both paths: the same
    losses, epoch by epoch."""
    data = dataset(rows=160)
    train = TrainConfig(epochs=3, batch_size=32, objective="likelihood", gate_lr_scale=5.0, balance_loss=0.01, lr=3e-3)
    histories = []
    for switch in ("1", "0"):
        monkeypatch.setenv(SWITCH_ENV, switch)
        torch.manual_seed(4)
        model = build_model(ModelConfig(expert_hidden=(6,), gate="grkan"), data)
        assert Trainer(model, data, train).gradient_path == ("direct" if switch == "1" else "autograd")
        torch.manual_seed(4)
        model = build_model(ModelConfig(expert_hidden=(6,), gate="grkan"), data)
        histories.append(fit(model, data, train).history["train_loss"])
    np.testing.assert_allclose(histories[0], histories[1], rtol=1e-4, atol=1e-5)
