"""The speed paths keep exact behaviour: the fused KAN function against autograd through the textbook basis,
edge cases of the local basis (outside the knots, knots themselves, NaN), and FastAdam against torch.optim.Adam."""

from __future__ import annotations

import copy
import math

import pytest
import torch
import torch.nn.functional as F

from kamoe_viz.config import ModelConfig
from kamoe_viz.nn import KAMoE, KANLinear
from kamoe_viz.nn.fast import native
from kamoe_viz.nn.fast.optim import FastAdam
from kamoe_viz.nn.kan import bspline_basis_recursive, uniform_knots
from kamoe_viz.nn.spline_ops import _piece_coefficients


def autograd_kan(layer: KANLinear, x: torch.Tensor) -> torch.Tensor:
    """The same layer through plain autograd over the Cox-de Boor recursion (no custom backward)."""
    basis = bspline_basis_recursive(x, layer.grid, layer.spline_order)
    features = torch.cat([layer._base(x), basis.flatten(1)], dim=1)
    weight = torch.cat([layer.base_weight, layer.spline_weight.flatten(1)], dim=1)
    return F.linear(features, weight, layer.bias)


def exact_layer(in_f: int, out_f: int, **kw) -> KANLinear:
    layer = KANLinear(in_f, out_f, **kw).double()
    with torch.no_grad():
        layer.grid.copy_(
            uniform_knots(*layer.grid_range, layer.grid_size, layer.spline_order, dtype=torch.float64).expand_as(
                layer.grid
            )
        )
    return layer


@pytest.mark.parametrize("order", [1, 2, 3, 4, 5])
@pytest.mark.parametrize("base", ["silu", "relu", "elu", "identity"])
def test_fused_forward_and_backward_equal_autograd(order, base):
    torch.manual_seed(order)
    layer = exact_layer(6, 4, grid_size=4, spline_order=order, grid_range=(-1.5, 2.0), base_activation=base, bias=True)
    with torch.no_grad():
        layer.bias.normal_()
    # inside, outside, and exactly on knots (where pieces switch)
    x = torch.cat([torch.randn(40, 6, dtype=torch.float64) * 2, layer.grid[:, :6].t().clone()]).requires_grad_()
    x_ref = x.detach().clone().requires_grad_()
    weights = torch.randn(x.shape[0], 4, dtype=torch.float64)
    (layer(x) * weights).sum().backward()
    fast = [x.grad.clone()] + [p.grad.clone() for p in layer.parameters()]
    layer.zero_grad()
    out_ref = autograd_kan(layer, x_ref)
    torch.testing.assert_close(layer(x).detach(), out_ref.detach(), atol=1e-12, rtol=1e-12)
    (out_ref * weights).sum().backward()
    slow = [x_ref.grad] + [p.grad for p in layer.parameters()]
    if order == 1:  # piecewise linear: at a knot the derivative jumps, and either one-sided value is right
        fast[0], slow[0] = fast[0][:40], slow[0][:40]
    for a, b in zip(fast, slow):
        torch.testing.assert_close(a, b, atol=1e-10, rtol=1e-10)


def test_gradcheck_of_the_fused_function_without_bias():
    torch.manual_seed(0)
    layer = exact_layer(3, 2, grid_size=5, spline_order=3, base_activation="silu")
    x = (torch.rand(7, 3, dtype=torch.float64) * 2.4 - 1.2).requires_grad_()
    assert torch.autograd.gradcheck(
        lambda inp, w, s: torch.func.functional_call(layer, {"base_weight": w, "spline_weight": s}, (inp,)),
        (x, layer.base_weight.detach().clone().requires_grad_(), layer.spline_weight.detach().clone().requires_grad_()),
    )


def test_far_outside_and_nan_inputs():
    layer = KANLinear(2, 3, base_activation="identity")
    x = torch.tensor([[1e30, -1e30], [float("inf"), 0.0], [float("nan"), 0.5]], requires_grad=True)
    out = layer(x)
    assert torch.isfinite(out[0]).all()  # the spline part is zero far outside; the base part is linear
    torch.testing.assert_close(out[0], layer.base_weight.detach() @ x[0].detach())
    assert torch.isnan(out[2]).all()  # NaN propagates (no crash from a NaN index)
    out[0].sum().backward()
    torch.testing.assert_close(x.grad[0], layer.base_weight.detach().sum(0))
    basis = layer.b_splines(x.detach())
    assert basis[0].abs().sum() == 0 and basis[1, 0].abs().sum() == 0


def test_piece_coefficients_are_the_cardinal_b_spline():
    # cubic pieces in closed form: u^3/6, (-3u^3+3u^2+3u+1)/6, (3u^3-6u^2+4)/6, (1-u)^3/6
    expected = [[0, 0, 0, 1 / 6], [1 / 6, 1 / 2, 1 / 2, -1 / 2], [2 / 3, 0, -1, 1 / 2], [1 / 6, -1 / 2, 1 / 2, -1 / 6]]
    for got, want in zip(_piece_coefficients(3), expected):
        assert got == pytest.approx(want, abs=1e-15)
    for k in range(1, 6):  # the pieces of N_k sum to 1 at every u (partition of unity)
        sums = [sum(row[p] for row in _piece_coefficients(k)) for p in range(k + 1)]
        assert sums == pytest.approx([1.0] + [0.0] * k, abs=1e-12)


def test_grid_cache_follows_grid_updates_and_state_loading():
    torch.manual_seed(1)
    layer = KANLinear(2, 2, grid_size=4)
    x = torch.randn(200, 2) * 3
    before = layer(x).detach()
    original = copy.deepcopy(layer.state_dict())
    twin = copy.deepcopy(layer)
    twin(x)  # fills twin's knot cache with the original grid
    layer.update_grid(x)
    torch.testing.assert_close(layer(x), autograd_kan(layer, x), atol=1e-5, rtol=1e-5)
    twin.load_state_dict(layer.state_dict())  # in-place copy into the buffers: the cache must notice
    torch.testing.assert_close(twin(x), layer(x))
    twin.load_state_dict(original)
    torch.testing.assert_close(twin(x), before)


def test_fast_adam_matches_torch_adam_bit_for_bit():
    torch.manual_seed(0)
    model = KAMoE(ModelConfig(gate="grkan", expert="kan", expert_hidden=(6,)).validate(), 4, 1)
    twin = copy.deepcopy(model)
    ours = FastAdam(model.parameters(), lr=1e-2, weight_decay=1e-3)
    theirs = torch.optim.Adam(twin.parameters(), lr=1e-2, weight_decay=1e-3, fused=True)
    X, y = torch.randn(64, 4), torch.randn(64, 1)
    for step in range(15):
        if step == 8:  # plateau reduction changes the lr in the parameter group
            ours.param_groups[0]["lr"] = theirs.param_groups[0]["lr"] = 2.5e-3
        for m, opt in ((model, ours), (twin, theirs)):
            opt.zero_grad(set_to_none=True)
            F.mse_loss(m(X).prediction, y).backward()
            opt.step()
    for a, b in zip(model.parameters(), twin.parameters()):
        assert torch.equal(a, b)


def test_fast_adam_plain_fallback_agrees_and_state_round_trips():
    torch.manual_seed(0)
    a = torch.nn.Linear(5, 3)
    b = copy.deepcopy(a)
    fused, plain = FastAdam(a.parameters(), lr=0.05), FastAdam(b.parameters(), lr=0.05, fused=False)
    X = torch.randn(32, 5)
    for _ in range(10):
        for m, opt in ((a, fused), (b, plain)):
            opt.zero_grad()
            m(X).square().mean().backward()
            opt.step()
    for p, q in zip(a.parameters(), b.parameters()):
        torch.testing.assert_close(p, q, atol=1e-6, rtol=1e-5)
    state = fused.state_dict()
    again = FastAdam(b.parameters(), lr=1.0)
    again.load_state_dict(state)
    assert float(again.step_count) == 10 and again.param_groups[0]["lr"] == 0.05
    with pytest.raises(ValueError, match="no trainable parameters"):
        FastAdam([])


def test_fast_adam_skips_parameters_without_gradients():
    a, b = torch.nn.Linear(3, 1), torch.nn.Linear(3, 1)
    opt = FastAdam(list(a.parameters()) + list(b.parameters()), lr=0.1)
    frozen = [p.detach().clone() for p in b.parameters()]
    a(torch.randn(4, 3)).sum().backward()
    opt.step()
    assert all(torch.equal(p, q) for p, q in zip(b.parameters(), frozen))
    assert not math.isnan(float(a.weight.detach().sum()))


def test_several_forwards_before_one_backward():
    """Graphs of earlier calls stay valid (no shared scratch buffers between calls)."""
    torch.manual_seed(2)
    layer = exact_layer(3, 2, grid_size=3)
    x1, x2 = torch.randn(5, 3, dtype=torch.float64), torch.randn(7, 3, dtype=torch.float64)
    (layer(x1).sum() + layer(x2).square().sum()).backward()
    fast = [p.grad.clone() for p in layer.parameters()]
    layer.zero_grad()
    (autograd_kan(layer, x1).sum() + autograd_kan(layer, x2).square().sum()).backward()
    for a, p in zip(fast, layer.parameters()):
        torch.testing.assert_close(a, p.grad, atol=1e-10, rtol=1e-10)


def test_plain_autograd_path_for_other_devices_gives_the_same_layer(monkeypatch):
    """Devices without the fused kernels (e.g. MPS) take plain autograd over the recursion: same values."""
    import kamoe_viz.nn.kan as kan_module

    torch.manual_seed(4)
    layer = exact_layer(4, 3, grid_size=3)
    x = torch.randn(20, 4, dtype=torch.float64)
    fused = layer(x)
    monkeypatch.setattr(kan_module, "_FUSED_DEVICES", ())
    torch.testing.assert_close(layer(x), fused, atol=1e-12, rtol=1e-12)
    torch.testing.assert_close(layer.b_splines(x), bspline_basis_recursive(x, layer.grid, 3))


@pytest.mark.parametrize("fused", [True, False])
def test_fast_adam_skips_non_finite_steps_without_a_sync(fused):
    torch.manual_seed(5)
    layer = torch.nn.Linear(3, 2)
    twin = copy.deepcopy(layer)
    opt = FastAdam(layer.parameters(), lr=0.1, skip_nonfinite=True, fused=fused)
    ref = torch.optim.Adam(twin.parameters(), lr=0.1)
    X = torch.randn(8, 3)
    for step in range(6):
        opt.zero_grad()
        layer(X).square().mean().backward()
        if step == 2:  # a poisoned step: skipped, weights stay finite and unchanged
            layer.weight.grad[0, 0] = float("nan")
            before = [p.detach().clone() for p in layer.parameters()]
            opt.step()
            assert all(torch.equal(a, b) for a, b in zip(before, layer.parameters()))
            continue
        opt.step()
        ref.zero_grad()
        twin(X).square().mean().backward()
        ref.step()
    assert float(opt.skipped_steps) == 1 and float(opt.step_count) == 5
    for a, b in zip(layer.parameters(), twin.parameters()):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-5)


def test_large_inference_batches_are_chunked_with_identical_results():
    """The PyTorch path (the C kernel needs no chunks: it never builds the padded feature matrix)."""
    torch.manual_seed(6)
    layer = KANLinear(5, 4)
    x = torch.randn(5000, 5)
    with torch.no_grad(), native.use(False):
        chunked = layer(x)
    with native.use(False):
        whole = layer(x).detach()  # grad mode: one piece
    torch.testing.assert_close(chunked, whole, atol=0, rtol=0)
