"""The likelihood objective and the prediction agree for every router: the likelihood scores the gate's full
probabilities (so top-1 routers still train the gate), and the model mixes the routed weights normalised to sum 1
(so the prediction is the routed mixture's mean; top-1: the chosen expert's own output)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from kamoe_viz.config import ROUTINGS, TOP_K_ROUTINGS, ModelConfig, RunConfig, TrainConfig
from kamoe_viz.nn import KAMoE
from kamoe_viz.training.objectives import Objective, mixture_nll, prepare_model

FEAT, E = 4, 3


def _model(routing: str, objective: str, **kw) -> KAMoE:
    if routing in TOP_K_ROUTINGS:
        kw.setdefault("top_k", 1)
    torch.manual_seed(0)
    config = ModelConfig(routing=routing, n_experts=E, expert_hidden=(6,), gate="linear", **kw).validate()
    return prepare_model(KAMoE(config, FEAT, 1), TrainConfig(objective=objective))


@pytest.mark.parametrize("routing", ["switch", "topk", "noisy_topk", "sigmoid_bias"])
def test_top1_with_the_likelihood_predicts_the_chosen_experts_output_and_trains_the_gate(routing):
    model = _model(routing, "likelihood", gate_activation="softmax").train()
    x, y = torch.randn(64, FEAT), torch.randn(64, 1)
    out = model(x)
    chosen = out.gate_weights.argmax(-1)
    kept = out.gate_weights.sum(-1) > 0  # switch may drop rows over capacity in training
    assert torch.allclose(out.gate_weights.sum(-1)[kept], torch.ones(int(kept.sum())))
    own = out.expert_outputs[torch.arange(64), 0, chosen]
    torch.testing.assert_close(out.prediction[kept, 0], own[kept])
    assert torch.allclose(out.gate_probs.sum(-1), torch.ones(64), atol=1e-5)
    total, _ = Objective(TrainConfig(objective="likelihood"), "regression")(out, y)
    total.backward()
    assert sum(float(p.grad.abs().sum()) for p in model.gate.parameters()) > 0, routing


def test_with_mse_top1_keeps_the_switch_weight():
    model = _model("switch", "mse").eval()
    out = model(torch.randn(16, FEAT))
    top = out.gate_weights.max(-1).values
    assert (top < 1).all() and torch.allclose(top, out.gate_probs.max(-1).values)  # p * E(x), as published


def test_the_likelihood_scores_the_full_probabilities_not_the_routed_weights():
    model = _model("switch", "likelihood").eval()
    x, y = torch.randn(32, FEAT), torch.randn(32, 1)
    with torch.no_grad():
        out = model(x)
    objective = Objective(TrainConfig(objective="likelihood"), "regression")
    expected = mixture_nll("regression", out.gate_probs, out.expert_outputs, y, objective.log_sigma)
    assert float(objective.task_part(out, y).detach()) == pytest.approx(float(expected.detach()))
    routed = mixture_nll("regression", out.gate_weights, out.expert_outputs, y, objective.log_sigma)
    assert float(expected.detach()) != pytest.approx(float(routed.detach()))


@pytest.mark.parametrize("routing", ROUTINGS)
def test_dense_probabilities_sum_to_one_for_every_router(routing):
    kw = {"gate_activation": "sigmoid"} if routing in ("dense", "topk") else {}
    out = _model(routing, "likelihood", **kw).eval()(torch.randn(8, FEAT))
    sums = out.gate_probs.sum(-1)
    assert torch.all((sums - 1).abs() < 1e-5) or routing == "relu", (routing, sums)
    assert not math.isnan(float(sums.sum()))


def test_a_saved_likelihood_run_predicts_as_trained(tmp_path):
    from kamoe_viz.runstore import RunStore
    from kamoe_viz.training import predict, train_run

    config = RunConfig.from_dict(
        {
            "data": {"options": {"n_samples": 600}},
            "model": {"routing": "switch", "expert_hidden": [6], "gate": "linear"},
            "train": {"epochs": 2, "objective": "likelihood"},
        }
    )
    run = train_run(config)
    assert run.model.normalise_weights
    store = RunStore(str(tmp_path))
    loaded = store.load(store.save(run))
    assert loaded.model.normalise_weights
    X = run.dataset.X_test[:50]
    np.testing.assert_allclose(
        predict(loaded.model, X)["prediction"], predict(run.model, X)["prediction"], rtol=1e-6, atol=1e-6
    )
