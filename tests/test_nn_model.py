"""Gates, experts and KAMoE: shapes for every combination, reference parameter counts, gate activations, top-k,
the mixture identity and equality with a slow, readable reference computation of the same model."""

from __future__ import annotations

import itertools
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F

from kamoe_viz.config import ModelConfig
from kamoe_viz.errors import ValidationError
from kamoe_viz.nn import (
    GRKANGate,
    GRNGate,
    KAMoE,
    KanLayerRef,
    KANLinear,
    LinearGate,
    MoEOutput,
    build_gate,
    build_model,
)
from kamoe_viz.nn.gates import gate_parameter_count
from kamoe_viz.nn.kan import bspline_basis_recursive, uniform_knots
from kamoe_viz.nn.routers import build_router

B, T, FEAT, E, H, N_OUT = 6, 5, 4, 3, 7, 2
TABULAR = [("mlp", (H,)), ("mlp", (H, 5)), ("kan", (H,)), ("kan", (H, 5))]


def config(**kw) -> ModelConfig:
    kw.setdefault("expert_hidden", (H,))
    kw.setdefault("n_experts", E)
    return ModelConfig(**kw).validate()


@pytest.mark.parametrize(
    "gate,activation,top_k", list(itertools.product(["linear", "grn", "grkan"], ["sigmoid", "softmax"], [0, 1, 2]))
)
@pytest.mark.parametrize("expert,hidden", TABULAR)
def test_tabular_shapes(gate, activation, top_k, expert, hidden):
    torch.manual_seed(0)
    model = KAMoE(
        config(gate=gate, gate_activation=activation, top_k=top_k, expert=expert, expert_hidden=hidden), FEAT, N_OUT
    )
    out = model(torch.randn(B, FEAT))
    assert isinstance(out, MoEOutput)
    assert out.prediction.shape == (B, N_OUT)
    assert out.gate_weights.shape == (B, E)
    assert out.expert_outputs.shape == (B, N_OUT, E)
    assert out.expert_hidden.shape == (B, E, hidden[-1])
    assert model.gate_weights(torch.randn(B, FEAT)).shape == (B, E)
    if top_k:
        assert torch.all((out.gate_weights > 0).sum(-1) == top_k)
    out.prediction.sum().backward()
    assert all(p.grad is not None for p in model.parameters())


@pytest.mark.parametrize("gate", ["linear", "grn", "grkan"])
@pytest.mark.parametrize("expert", ["lstm", "gru", "mlp", "kan"])
@pytest.mark.parametrize("top_k", [0, 2])
def test_sequence_shapes(gate, expert, top_k):
    torch.manual_seed(0)
    model = KAMoE(config(gate=gate, expert=expert, top_k=top_k), FEAT, N_OUT, seq_len=T)
    out = model(torch.randn(B, T, FEAT))
    assert out.prediction.shape == (B, N_OUT)
    assert out.gate_weights.shape == (B, E)
    assert out.expert_outputs.shape == (B, N_OUT, E)
    assert out.expert_hidden.shape == (B, E, H)
    out.prediction.sum().backward()


@pytest.mark.parametrize("gate", ["linear", "grn", "grkan"])
@pytest.mark.parametrize("expert", ["lstm", "gru"])
@pytest.mark.parametrize("activation", ["sigmoid", "softmax"])
def test_sequence_shapes_return_sequences(gate, expert, activation):
    torch.manual_seed(0)
    model = KAMoE(
        config(gate=gate, expert=expert, gate_activation=activation, return_sequences=True, expert_hidden=(H, 5)),
        FEAT,
        N_OUT,
        seq_len=T,
    )
    out = model(torch.randn(B, T, FEAT))
    assert out.prediction.shape == (B, T, N_OUT)
    assert out.gate_weights.shape == (B, T, E)
    assert out.expert_outputs.shape == (B, T, N_OUT, E)
    assert out.expert_hidden.shape == (B, T, E, 5)
    assert_mixture_identity(model, out)


def test_standard_baseline_is_one_expert_without_gate():
    model = KAMoE(config(kind="standard"), FEAT, N_OUT)
    out = model(torch.randn(B, FEAT))
    assert out.gate_weights.shape == (B, 1) and torch.all(out.gate_weights == 1)
    assert out.expert_outputs.shape == (B, N_OUT, 1)
    torch.testing.assert_close(out.prediction, out.expert_outputs[..., 0])
    assert model.gate is None and model.input_scale is None and model.gate_parameter_count() == 0
    # a plain Dense(H, relu) -> Dense(N_OUT) network
    assert model.parameter_count() == FEAT * H + H + H * N_OUT + N_OUT


def test_invalid_combinations_raise_validation_errors():
    with pytest.raises(ValidationError, match="model.expert.*sequential"):
        KAMoE(config(expert="lstm"), FEAT, N_OUT)
    with pytest.raises(ValidationError, match="model.return_sequences"):
        KAMoE(config(expert="mlp", return_sequences=True), FEAT, N_OUT, seq_len=T)


@pytest.mark.parametrize("u", [1, 8, 32, 100, 257])
def test_reference_gate_parameter_counts(u):
    kan = dict(grid_size=3, spline_order=3, grid_range=(-1.0, 1.0))
    assert gate_parameter_count(build_gate("grn", u, 3)) == 6 * u + 48
    assert gate_parameter_count(build_gate("grkan", u, 3, **kan)) == 24 * u + 96
    assert gate_parameter_count(build_gate("linear", u, 3)) == 3 * u + 3


@pytest.mark.parametrize("u", [16, 100])
def test_model_gate_parameter_count_uses_gate_width(u):
    model = KAMoE(config(gate="grkan", gate_hidden=u), FEAT, N_OUT)
    assert model.gate_parameter_count() == 24 * u + 96
    model = KAMoE(config(gate="grn", expert_hidden=(u,)), FEAT, N_OUT)  # u defaults to the expert width
    assert model.gate_parameter_count() == 6 * u + 48


def test_reference_california_model_parameter_count():
    # x~ (8) + 3 experts Dense(100) + gate input Dense(100) + GRKAN gate + head Dense(1)
    model = KAMoE(ModelConfig().validate(), 8, 1)
    expected = 8 + 3 * (8 * 100 + 100) + (8 * 100 + 100) + (24 * 100 + 96) + (100 + 1)
    assert model.parameter_count() == expected


def test_softmax_weights_sum_to_one_and_sigmoid_need_not():
    torch.manual_seed(0)
    h = torch.randn(200, 10) * 3
    for family in ("linear", "grn", "grkan"):
        logits = build_gate(family, 10, 4)(h)
        soft = build_router("dense", 4, gate_activation="softmax")(logits).weights
        torch.testing.assert_close(soft.sum(-1), torch.ones(200))
        sig = build_router("dense", 4, gate_activation="sigmoid")(logits).weights
        assert torch.all((sig > 0) & (sig < 1))
        assert (sig.sum(-1) - 1).abs().max() > 0.1  # not normalised


@pytest.mark.parametrize("family", ["linear", "grn", "grkan"])
@pytest.mark.parametrize("activation", ["sigmoid", "softmax"])
@pytest.mark.parametrize("k", [1, 2, 3])
def test_top_k_keeps_the_k_largest_and_zeroes_the_rest(family, activation, k):
    torch.manual_seed(k)
    gate = build_gate(family, 6, 4)
    h = torch.randn(100, 6)
    logits = gate(h)
    weights = build_router("topk", 4, top_k=k, gate_activation=activation)(logits).weights
    assert torch.all((weights != 0).sum(-1) == k)
    kept = logits.topk(k, dim=-1).indices.sort(-1).values  # expert order, as weights[mask] is
    mask = torch.zeros_like(weights, dtype=torch.bool).scatter_(-1, kept, True)
    assert torch.all(weights[~mask] == 0)
    if activation == "softmax" and k == 1:  # Switch-style: the plain probability, so the gate gets a gradient
        torch.testing.assert_close(weights[mask], torch.softmax(logits, -1)[mask])
    elif activation == "softmax":
        torch.testing.assert_close(weights.sum(-1), torch.ones(100))
        torch.testing.assert_close(weights[mask].view(100, k), torch.softmax(logits.gather(-1, kept), -1))
    else:
        torch.testing.assert_close(weights[mask], torch.sigmoid(logits)[mask])


def test_top_k_with_tied_logits_keeps_exactly_k():
    gate = LinearGate(3, 4)
    with torch.no_grad():
        gate.dense.weight.zero_()
        gate.dense.bias.zero_()
    weights = build_router("topk", 4, top_k=2, gate_activation="sigmoid")(gate(torch.randn(5, 3))).weights
    # all four logits equal
    assert torch.all((weights != 0).sum(-1) == 2)


def assert_mixture_identity(model: KAMoE, out: MoEOutput) -> None:
    bias = model.head.bias.view(*([1] * (out.expert_outputs.dim() - 2)), -1, 1)
    mixed = (out.gate_weights.unsqueeze(-2) * (out.expert_outputs - bias)).sum(-1) + bias[..., 0]
    torch.testing.assert_close(out.prediction, mixed, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("gate", ["linear", "grn", "grkan"])
@pytest.mark.parametrize("expert", ["mlp", "kan"])
@pytest.mark.parametrize("top_k", [0, 2])
def test_prediction_is_the_gate_weighted_sum_of_expert_outputs(gate, expert, top_k):
    torch.manual_seed(3)
    model = KAMoE(config(gate=gate, expert=expert, top_k=top_k), FEAT, N_OUT)
    with torch.no_grad():
        model.head.bias.normal_()
    assert_mixture_identity(model, model(torch.randn(B, FEAT)))


# ----- a slow, readable reference computation of the whole model -------------------------------------------------
def ref_kan(layer: KANLinear, x: torch.Tensor) -> torch.Tensor:
    """Per edge: w_base * b(x) + sum_m c_m B_m(x) with the Cox-de Boor recursion; summed over inputs."""
    basis = bspline_basis_recursive(x, layer.grid, layer.spline_order)  # (N, in, n_basis)
    out = torch.zeros(x.shape[0], layer.out_features, dtype=x.dtype)
    for j in range(layer.out_features):
        for i in range(layer.in_features):
            out[:, j] += layer.base_weight[j, i] * layer._base(x[:, i])
            out[:, j] += basis[:, i, :] @ layer.spline_weight[j, i, :]
    return out if layer.bias is None else out + layer.bias


def ref_gate(gate, h: torch.Tensor, router) -> torch.Tensor:
    if isinstance(gate, LinearGate):
        logits = h @ gate.dense.weight.T + gate.dense.bias
    else:
        if isinstance(gate, GRNGate):
            eta = F.elu(h @ gate.dense1.weight.T + gate.dense1.bias) @ gate.dense2.weight.T + gate.dense2.bias
        else:
            assert isinstance(gate, GRKANGate)
            eta = ref_kan(gate.kan2, ref_kan(gate.kan1, h))
        n = gate.n_experts
        w, b = gate.glu.proj.weight, gate.glu.proj.bias
        glu = (eta @ w[:n].T + b[:n]) * torch.sigmoid(eta @ w[n:].T + b[n:])
        z = h @ gate.skip.weight.T + gate.skip.bias + glu
        mean, var = z.mean(-1, keepdim=True), z.var(-1, unbiased=False, keepdim=True)
        logits = (z - mean) / torch.sqrt(var + 1e-3) * gate.norm.weight + gate.norm.bias
    weights = torch.softmax(logits, -1) if router.activation == "softmax" else torch.sigmoid(logits)
    top_k = getattr(router, "top_k", 0)
    if top_k:
        rows = []
        for r in range(logits.shape[0]):
            order = sorted(range(gate.n_experts), key=lambda e: -float(logits[r, e]))[:top_k]
            if router.activation == "softmax" and top_k == 1:  # Switch-style: the plain probability
                kept = torch.softmax(logits[r], -1)[order]
            elif router.activation == "softmax":
                kept = torch.softmax(logits[r, order], -1)
            else:
                kept = torch.sigmoid(logits[r, order])
            row = torch.zeros(gate.n_experts, dtype=logits.dtype)
            row[order] = kept
            rows.append(row)
        weights = torch.stack(rows)
    return weights


def ref_expert(model: KAMoE, e: int, x: torch.Tensor) -> torch.Tensor:
    """Expert e on its own, as a Keras user would write it (layer after layer)."""
    experts, h0 = model.experts, model.experts.hidden[0]
    if model.config.expert == "mlp":
        w, b = experts.first.weight[e * h0 : (e + 1) * h0], experts.first.bias[e * h0 : (e + 1) * h0]
        z = torch.relu(x @ w.T + b)
        for weight, bias in zip(experts.weights, experts.biases):
            z = torch.relu(z @ weight[e] + bias[e, 0])
        return z
    z = ref_kan(experts.first, x)[:, e * h0 : (e + 1) * h0]
    for layer in experts.deeper[e] if len(experts.deeper) else []:
        z = ref_kan(layer, z)
    return z


def ref_model(model: KAMoE, x: torch.Tensor) -> torch.Tensor:
    xs = x * model.input_scale
    h = torch.relu(xs @ model.gate_input.weight.T + model.gate_input.bias)
    weights = ref_gate(model.gate, h, model.router)
    mixed = sum(weights[:, e : e + 1] * ref_expert(model, e, xs) for e in range(model.n_experts))
    return mixed @ model.head.weight.T + model.head.bias


@pytest.mark.parametrize("gate", ["linear", "grn", "grkan"])
@pytest.mark.parametrize("expert,hidden", TABULAR)
@pytest.mark.parametrize("activation,top_k", [("sigmoid", 0), ("softmax", 0), ("sigmoid", 2), ("softmax", 1)])
def test_optimised_forward_equals_slow_reference(gate, expert, hidden, activation, top_k):
    torch.manual_seed(11)
    model = KAMoE(
        config(gate=gate, expert=expert, expert_hidden=hidden, gate_activation=activation, top_k=top_k), FEAT, N_OUT
    ).double()
    with torch.no_grad():  # move every parameter away from its initial value so nothing hides behind ones/zeros
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.3)
        exact_double_knots(model)
    x = torch.randn(B * 3, FEAT, dtype=torch.float64) * 1.2
    out = model(x)
    with torch.no_grad():
        expected = ref_model(model, x)
    torch.testing.assert_close(out.prediction.detach(), expected, atol=1e-10, rtol=1e-10)
    for e in range(E):
        torch.testing.assert_close(
            out.expert_hidden[:, e].detach(),
            ref_expert(model, e, x * model.input_scale).detach(),
            atol=1e-10,
            rtol=1e-10,
        )


def exact_double_knots(model: KAMoE) -> None:
    """float32 knots cast to float64 are uniform only to ~1e-7; recompute them in float64 so that the closed-form
    basis and the recursion see the same knots and can be compared at double precision."""
    with torch.no_grad():
        for ref in model.kan_layers():
            layer = ref.layer
            layer.grid.copy_(
                uniform_knots(*layer.grid_range, layer.grid_size, layer.spline_order, dtype=torch.float64).expand_as(
                    layer.grid
                )
            )


def test_optimised_gradients_equal_reference_gradients():
    torch.manual_seed(12)
    model = KAMoE(config(gate="grkan", expert="kan", expert_hidden=(H, 5)), FEAT, N_OUT).double()
    exact_double_knots(model)
    x = torch.randn(10, FEAT, dtype=torch.float64)
    model(x).prediction.square().sum().backward()
    fast = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    ref_model(model, x).square().sum().backward()
    for g_fast, p in zip(fast, model.parameters()):
        torch.testing.assert_close(g_fast, p.grad, atol=1e-9, rtol=1e-9)


def test_kan_layer_listing_and_inputs():
    model = KAMoE(config(gate="grkan", expert="kan", expert_hidden=(H, 5)), FEAT, N_OUT)
    refs = model.kan_layers()
    assert all(isinstance(r, KanLayerRef) for r in refs)
    names = [r.name for r in refs]
    assert names[:3] == ["gate.kan1", "gate.kan2", "experts.layer1 (all experts)"]
    assert [r.expert for r in refs[3:]] == [0, 1, 2]
    assert refs[2].group_size == H and refs[2].layer.out_features == E * H
    inputs = model.kan_layer_inputs(torch.randn(B, FEAT))
    assert set(inputs) == set(names)
    for ref in refs:
        assert inputs[ref.name].shape == (B, ref.layer.in_features)
    assert model.kan_layers()[0].layer is model.gate.kan1
    assert KAMoE(config(gate="grn", expert="mlp"), FEAT, N_OUT).kan_layers() == []


def test_build_model_uses_the_dataset_shape():
    data = SimpleNamespace(n_features=FEAT, n_outputs=3, seq_len=None)
    model = build_model(ModelConfig(expert_hidden=(H,)), data)
    assert model(torch.randn(2, FEAT)).prediction.shape == (2, 3)
    with pytest.raises(ValidationError, match="model.n_experts"):
        build_model(ModelConfig(n_experts=0), data)


def test_input_scaling_starts_at_ones_and_is_trainable():
    model = KAMoE(config(), FEAT, N_OUT)
    assert torch.equal(model.input_scale.detach(), torch.ones(FEAT)) and model.input_scale.requires_grad
    assert KAMoE(config(input_scaling=False), FEAT, N_OUT).input_scale is None
