"""Routers against hand-computed examples, gradients reaching the gate for every router, sequence shapes, the
balance and z losses, the mixture likelihood, hooks on every layer, refused options, and old configs loading."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from kamoe_viz.config import ROUTINGS, TOP_K_ROUTINGS, ModelConfig, RunConfig, TrainConfig
from kamoe_viz.errors import ValidationError
from kamoe_viz.nn import KAMoE, build_gate, build_router
from kamoe_viz.nn.routers import ROUTERS, RouterOutput, balance_loss, capacity, z_loss
from kamoe_viz.training.objectives import mixture_nll

FEAT, N_OUT, E = 4, 1, 3


def model_config(routing: str, **kw) -> ModelConfig:
    kw.setdefault("expert_hidden", (6,))
    if routing in TOP_K_ROUTINGS:
        kw.setdefault("top_k", 1)
    return ModelConfig(routing=routing, n_experts=E, **kw).validate()


# ----- hand-computed examples -------------------------------------------------------------------------------------
def test_topk_renormalises_over_the_kept_experts():
    logits = torch.tensor([[2.0, 1.0, 0.0, -1.0]])
    weights = build_router("topk", 4, top_k=2, gate_activation="softmax")(logits).weights
    e = math.e
    torch.testing.assert_close(weights, torch.tensor([[e / (e + 1), 1 / (e + 1), 0.0, 0.0]]))


def test_top1_weight_is_the_plain_probability_and_the_gate_gets_a_gradient():
    logits = torch.tensor([[2.0, 1.0, 0.0, -1.0]], requires_grad=True)
    weights = build_router("topk", 4, top_k=1, gate_activation="softmax")(logits).weights
    e = math.e
    expected = e**2 / (e**2 + e + 1 + 1 / e)
    torch.testing.assert_close(weights, torch.tensor([[expected, 0.0, 0.0, 0.0]]))
    weights.sum().backward()
    assert logits.grad.abs().sum() > 0.1  # renormalised, the weight would be exactly 1 and this gradient 0


def test_switch_drops_rows_over_capacity_in_training_only():
    # 4 rows, 2 experts, capacity ceil(1.0 * 4 / 2) = 2: rows 0, 1, 2 prefer expert 0, row 3 prefers expert 1
    logits = torch.tensor([[3.0, 0.0], [2.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    router = build_router("switch", 2, capacity_factor=1.0).train()
    out = router(logits)
    kept = out.weights > 0
    assert kept.tolist() == [[True, False], [True, False], [False, False], [False, True]]  # row 2 overflowed
    assert float(out.aux["dropped_fraction"]) == pytest.approx(0.25)
    torch.testing.assert_close(out.weights[0, 0], torch.softmax(logits[0], -1)[0])
    assert (router.eval()(logits).weights > 0).sum() == 4  # inference does not depend on the batch
    assert capacity(1.25, 128, 3) == 54  # ceil(1.25 * 128 / 3)


def test_expert_choice_gives_each_expert_exactly_c_rows():
    torch.manual_seed(0)
    logits = torch.randn(10, 3)
    out = build_router("expert_choice", 3, capacity_factor=1.0)(logits)
    per_expert = (out.weights > 0).sum(0)
    assert per_expert.tolist() == [4, 4, 4]  # C = ceil(1.0 * 10 / 3) = 4
    covered = (out.weights > 0).any(-1).float().mean()
    assert float(out.aux["coverage"]) == pytest.approx(float(covered))
    assert float(out.aux["dropped_fraction"]) == pytest.approx(1 - float(covered))
    # a hand-made batch: expert 0 and 1 both want row 0 most, expert 2 row 1; C = ceil(0.5 * 4 / 3) = 1
    logits = torch.tensor([[5.0, 5.0, 0.0], [0.0, 0.0, 5.0], [0.0, 0.0, 0.0], [-1.0, -1.0, -1.0]])
    out = build_router("expert_choice", 3, capacity_factor=0.5)(logits)
    assert (out.weights > 0).tolist() == [
        [True, True, False],
        [False, False, True],
        [False, False, False],
        [False, False, False],
    ]
    assert float(out.aux["coverage"]) == pytest.approx(0.5)


def test_sigmoid_bias_moves_towards_the_mean_load():
    router = build_router("sigmoid_bias", 3, top_k=1, bias_update_rate=0.01).train()
    logits = torch.tensor([[2.0, 0.0, -1.0]] * 6)  # every row picks expert 0: load (6, 0, 0), mean 2
    out = router(logits)
    torch.testing.assert_close(out.weights, torch.sigmoid(logits) * torch.tensor([1.0, 0.0, 0.0]))
    router.after_step()
    torch.testing.assert_close(router.bias, torch.tensor([-0.01, 0.01, 0.01]))
    with torch.no_grad():
        router.bias.copy_(torch.tensor([0.0, 3.0, 0.0]))  # the bias changes the selection, not the weights
    out = router(logits)
    torch.testing.assert_close(out.weights[0], torch.tensor([0.0, 0.5, 0.0]))  # sigmoid(0) = 0.5, not 0.5 + 3


def test_sigmoid_bias_normalises_over_the_selected():
    router = build_router("sigmoid_bias", 3, top_k=2)
    logits = torch.tensor([[1.0, 0.0, -3.0]])
    a, b = torch.sigmoid(torch.tensor(1.0)), torch.sigmoid(torch.tensor(0.0))
    torch.testing.assert_close(router(logits).weights, torch.tensor([[a / (a + b), b / (a + b), 0.0]]))


def test_relu_router_and_noisy_topk_is_deterministic_at_inference():
    logits = torch.tensor([[1.0, -2.0, 0.5]])
    torch.testing.assert_close(build_router("relu", 3)(logits).weights, torch.tensor([[1.0, 0.0, 0.5]]))
    noisy = build_router("noisy_topk", 3, top_k=1).eval()
    torch.testing.assert_close(
        noisy(logits).weights, build_router("topk", 3, top_k=1, gate_activation="softmax")(logits).weights
    )
    noisy.train()
    torch.manual_seed(0)
    draws = {tuple((noisy(torch.zeros(1, 3)).weights > 0).flatten().tolist()) for _ in range(30)}
    assert len(draws) > 1  # training noise changes which expert wins among tied logits


def test_balance_and_z_loss_by_hand():
    logits = torch.zeros(4, 2)
    weights = torch.tensor([[1.0, 0.0]] * 4)  # every row to expert 0; P = (0.5, 0.5)
    out = RouterOutput(weights, logits, {})
    assert float(balance_loss(out)) == pytest.approx(2 * (1.0 * 0.5 + 0.0 * 0.5))
    assert float(z_loss(out)) == pytest.approx(math.log(2) ** 2)  # logsumexp(0, 0) = log 2


def test_mixture_likelihood_by_hand():
    weights = torch.tensor([[0.25, 0.75]])
    outputs = torch.tensor([[[0.0, 1.0]]])  # (rows, N_OUT, E)
    target = torch.tensor([[0.0]])
    density = 0.25 * math.exp(0) / math.sqrt(2 * math.pi) + 0.75 * math.exp(-0.5) / math.sqrt(2 * math.pi)
    assert float(mixture_nll("regression", weights, outputs, target)) == pytest.approx(-math.log(density))
    logits = torch.tensor([[[2.0, 0.0], [0.0, 0.0]]])  # (rows, classes, E); class 0
    p0 = 0.25 * math.e**2 / (math.e**2 + 1) + 0.75 * 0.5
    assert float(mixture_nll("classification", weights, logits, torch.tensor([0]))) == pytest.approx(-math.log(p0))


# ----- every router in the model ------------------------------------------------------------------------------------
@pytest.mark.parametrize("routing", ROUTINGS)
def test_gradients_reach_the_gate_for_every_router(routing):
    torch.manual_seed(1)
    model = KAMoE(model_config(routing, gate="linear", gate_activation="softmax"), FEAT, N_OUT).train()
    out = model(torch.randn(64, FEAT))
    ((out.prediction - 1.0) ** 2).mean().backward()
    gate_grad = sum(float(p.grad.abs().sum()) for p in model.gate.parameters())
    assert gate_grad > 0, routing


@pytest.mark.parametrize("routing", ROUTINGS)
def test_sequence_routing_is_per_time_step(routing):
    torch.manual_seed(2)
    model = KAMoE(model_config(routing, expert="gru", return_sequences=True, gate="linear"), FEAT, N_OUT, seq_len=5)
    out = model.train()(torch.randn(8, 5, FEAT))
    assert out.gate_weights.shape == (8, 5, E) and out.prediction.shape == (8, 5, N_OUT)
    assert out.expert_outputs.shape == (8, 5, N_OUT, E)
    assert set(out.aux) >= {"balance_loss", "z_loss"}


def test_shared_experts_are_always_on():
    torch.manual_seed(3)
    model = KAMoE(model_config("topk", top_k=1, shared_experts=2), FEAT, N_OUT)
    x = torch.randn(16, FEAT)
    out = model(x)
    assert out.gate_weights.shape == (16, E)
    shared = model.shared(model.scaled_input(x)).sum(-2)
    mixed = (out.gate_weights.unsqueeze(-1) * out.expert_hidden).sum(-2) + shared
    torch.testing.assert_close(out.prediction, model.head(mixed))


@pytest.mark.parametrize("gate", ["linear", "grn", "grkan"])
@pytest.mark.parametrize("expert,hidden", [("mlp", (6,)), ("kan", (6, 4))])
def test_forward_hooks_fire_on_every_gate_and_expert_layer(gate, expert, hidden):
    torch.manual_seed(4)
    model = KAMoE(model_config("dense", gate=gate, expert=expert, expert_hidden=hidden, dropout=0.1), FEAT, N_OUT)
    containers = (torch.nn.ModuleList, torch.nn.ParameterList)
    layers = [
        (name, m)
        for name, m in model.named_modules()
        if name
        and name.split(".")[0] in ("gate", "experts", "gate_input", "router", "head")
        and not isinstance(m, containers)
        and name != "experts"
    ]
    called: set[str] = set()
    handles = [m.register_forward_hook(lambda mod, inp, out, name=name: called.add(name)) for name, m in layers]
    try:
        model.train()(torch.randn(5, FEAT))
    finally:
        for handle in handles:
            handle.remove()
    assert {name for name, _ in layers} == called
    assert any(name.startswith("gate.") for name in called) and any(name.startswith("experts.") for name in called)


def test_unknown_gate_and_router_options_are_refused():
    with pytest.raises(ValidationError, match="gate option dropout.*linear gate"):
        build_gate("linear", 3, 2, dropout=0.1)
    with pytest.raises(ValidationError, match="gate option activation"):
        build_gate("grkan", 3, 2, activation="softmax")
    with pytest.raises(ValidationError, match="router option top_k.*switch router.*capacity_factor"):
        build_router("switch", 3, top_k=1)
    with pytest.raises(ValidationError, match="model.routing"):
        build_router("hash", 3)
    with pytest.raises(ValidationError, match="model.routing"):
        ModelConfig(routing="hash").validate()
    with pytest.raises(ValidationError, match="model.routing: got 'sigmoid_bias'; needs model.top_k"):
        ModelConfig(routing="sigmoid_bias").validate()
    with pytest.raises(ValidationError, match="model.capacity_factor"):
        ModelConfig(routing="switch", capacity_factor=0).validate()
    with pytest.raises(ValidationError, match="train.objective"):
        TrainConfig(objective="hinge").validate()
    with pytest.raises(ValidationError, match="train.gate_lr_scale"):
        TrainConfig(gate_lr_scale=0).validate()


def test_registry_lists_each_router_with_its_options():
    assert tuple(ROUTERS) == ROUTINGS
    for spec in ROUTERS.values():
        assert spec.title and spec.paper and spec.definition
        assert set(spec.options) <= set(ModelConfig.__dataclass_fields__)
    assert [n for n, s in ROUTERS.items() if s.batch_dependent] == ["expert_choice"]


def test_old_configs_with_top_k_load_as_topk_and_round_trip():
    old = {"model": {"gate": "grn", "gate_activation": "softmax", "top_k": 1}, "train": {"epochs": 3}}
    config = RunConfig.from_dict(old)
    assert config.model.routing == "topk" and config.model.top_k == 1
    assert config.train.objective == "mse" and config.train.balance_loss == 0.0
    assert RunConfig.from_dict(RunConfig().to_dict()).model.routing == "dense"
    new = RunConfig.from_dict(
        {
            "model": {"routing": "switch", "capacity_factor": 2.0, "shared_experts": 1},
            "train": {"balance_loss": 0.01, "objective": "likelihood", "gate_lr_scale": 5},
        }
    )
    params = new.to_query_params()
    assert params["model.routing"] == "switch" and params["train.objective"] == "likelihood"
    assert RunConfig.from_query_params(params).to_dict() == new.to_dict()
    assert RunConfig.from_query_params({"model.top_k": "2"}).model.routing == "topk"  # an old link


# ----- training -------------------------------------------------------------------------------------------------------
def _dataset():
    from kamoe_viz.config import DataConfig
    from kamoe_viz.data import load_dataset

    return load_dataset(DataConfig(name="regimes", options={"n_samples": 600}))


def test_trainer_logs_aux_losses_and_updates_the_bias():
    from kamoe_viz.nn import build_model
    from kamoe_viz.training import Trainer

    data = _dataset()
    torch.manual_seed(0)
    model = build_model(model_config("sigmoid_bias", top_k=1), data)
    trainer = Trainer(model, data, TrainConfig(epochs=2, batch_size=64, balance_loss=0.01, z_loss=0.001))
    trainer.run_epochs(2)
    history = trainer.history()
    assert np.isfinite(history["balance_loss"]).all() and np.isfinite(history["z_loss"]).all()
    assert history["balance_loss"].between(1.0 - 1e-6, E + 1e-6).all()  # 1 = balanced, E = collapsed
    assert float(model.router.bias.abs().sum()) > 0  # updated after the steps


def test_gate_lr_scale_and_likelihood_train():
    from kamoe_viz.nn import build_model
    from kamoe_viz.training import Trainer

    data = _dataset()
    torch.manual_seed(0)
    model = build_model(model_config("dense", gate_activation="softmax"), data)
    trainer = Trainer(
        model,
        data,
        TrainConfig(
            epochs=2, lr=2e-3, objective="likelihood", gate_lr_scale=5.0, lr_patience=1, lr_factor=0.5, min_lr=1e-6
        ),
    )
    assert [g["lr"] for g in trainer.optimizer.param_groups] == pytest.approx([2e-3, 1e-2])
    gate_ids = {id(p) for p in model.routing_parameters()}
    assert all(id(p) in gate_ids for p in trainer.optimizer.param_groups[1]["params"])
    assert trainer.objective.log_sigma is not None
    trainer.run_epochs(2)
    assert np.isfinite(trainer.history()["train_loss"]).all()
    lrs = [g["lr"] for g in trainer.optimizer.param_groups]
    assert lrs[1] == pytest.approx(5 * lrs[0])  # a plateau reduction keeps the gate's scale


def test_a_balance_loss_switched_on_between_epochs_is_applied_on_either_gradient_path():
    from kamoe_viz.nn import build_model
    from kamoe_viz.training import Trainer

    data = _dataset()
    torch.manual_seed(0)
    trainer = Trainer(build_model(model_config("dense"), data), data, TrainConfig(epochs=3, device="cpu"))
    trainer.run_epochs(1)
    trainer.update_settings(balance_loss=0.5)
    assert trainer.objective.weights == {"balance_loss": 0.5}
    if trainer.gradient_path == "direct":  # the closed-form path adds the loss's gradient itself
        assert trainer.stepper.direct.aux_weights == {"balance_loss": 0.5}
    trainer.update_settings(balance_loss=0.0)
    assert trainer.objective.weights == {}
    assert trainer.stepper.direct is None or trainer.stepper.direct.aux_weights == {}


def test_readme_table_lists_every_router_with_its_paper_and_definition():
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    section = readme[readme.index("## Routing") :]
    for spec in ROUTERS.values():
        assert f"| `{spec.name}` | {spec.paper} | {spec.definition} |" in section, spec.name


@pytest.mark.parametrize("routing", ["sigmoid_bias", "noisy_topk"])
def test_a_saved_routed_run_loads_with_its_router_state(routing, tmp_path):
    from kamoe_viz.runstore import RunStore
    from kamoe_viz.training import predict, train_run

    config = RunConfig.from_dict(
        {
            "data": {"options": {"n_samples": 600}},
            "model": {"routing": routing, "top_k": 1, "shared_experts": 1, "expert_hidden": [6]},
            "train": {"epochs": 2, "balance_loss": 0.01},
        }
    )
    run = train_run(config)
    store = RunStore(str(tmp_path))
    loaded = store.load(store.save(run))
    assert loaded.config.model == run.config.model and loaded.config.train == run.config.train
    for name, tensor in run.model.state_dict().items():
        torch.testing.assert_close(loaded.model.state_dict()[name], tensor)
    X = run.dataset.X_test[:50]
    np.testing.assert_allclose(
        predict(loaded.model, X)["prediction"], predict(run.model, X)["prediction"], rtol=1e-6, atol=1e-6
    )
    if routing == "sigmoid_bias":
        assert float(loaded.model.router.bias.abs().sum()) > 0  # the learned balance is part of the run
