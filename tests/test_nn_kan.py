"""KANLinear: basis, forward vs a slow reference, edge functions, knots, grid update and its errors."""

from __future__ import annotations

import math

import pytest
import torch

from kamoe_viz.errors import GridUpdateError, KamoeError
from kamoe_viz.nn.kan import (
    KANLinear,
    bspline_basis_recursive,
    bspline_basis_uniform,
    uniform_knots,
)

ACTIVATIONS = {
    "silu": lambda v: v / (1 + math.exp(-v)),
    "relu": lambda v: max(v, 0.0),
    "elu": lambda v: v if v > 0 else math.exp(v) - 1,
    "identity": lambda v: v,
}


def cox_de_boor(x: float, knots: list[float], j: int, k: int) -> float:
    """B_{j,k}(x) by the textbook recursion, one scalar at a time (the slow, obviously right version)."""
    if k == 0:
        return 1.0 if knots[j] <= x < knots[j + 1] else 0.0
    left = (x - knots[j]) / (knots[j + k] - knots[j]) * cox_de_boor(x, knots, j, k - 1)
    right = (knots[j + k + 1] - x) / (knots[j + k + 1] - knots[j + 1]) * cox_de_boor(x, knots, j + 1, k - 1)
    return left + right


def reference_kan(layer: KANLinear, x: torch.Tensor) -> torch.Tensor:
    """out_j = sum_i w_base[j,i] b(x_i) + sum_i sum_m c[j,i,m] B_m(x_i) (+ bias_j), with scalar loops."""
    act = ACTIVATIONS[layer.base_activation_name]
    grid = layer.grid.double().tolist()
    wb = layer.base_weight.double()
    ws = layer.spline_weight.double()
    out = torch.zeros(x.shape[0], layer.out_features, dtype=torch.float64)
    for n in range(x.shape[0]):
        for i in range(layer.in_features):
            v = float(x[n, i])
            basis = torch.tensor(
                [cox_de_boor(v, grid[i], m, layer.spline_order) for m in range(layer.n_basis)], dtype=torch.float64
            )
            out[n] += wb[:, i] * act(v) + ws[:, i, :] @ basis
    if layer.bias is not None:
        out += layer.bias.double()
    return out


@pytest.mark.parametrize("order", [1, 2, 3, 4, 5])
@pytest.mark.parametrize("grid_size", [1, 3, 7])
def test_closed_form_uniform_basis_equals_cox_de_boor(order, grid_size):
    torch.manual_seed(order * 10 + grid_size)
    step = 3.5 / grid_size
    knots = -1.5 + torch.arange(-order, grid_size + order + 1, dtype=torch.float64) * step
    torch.testing.assert_close(knots.float(), uniform_knots(-1.5, 2.0, grid_size, order))
    n_basis = grid_size + order
    # points inside, outside, and exactly on knots
    x = torch.cat([torch.linspace(-4, 4, 301, dtype=torch.float64), knots, torch.randn(200, dtype=torch.float64)])
    x = x.unsqueeze(1)
    recursive = bspline_basis_recursive(x, knots.unsqueeze(0), order)
    closed = bspline_basis_uniform(x, knots[:1], knots[1:2] - knots[:1], n_basis, order)
    assert closed.shape == recursive.shape == (x.shape[0], 1, n_basis)
    torch.testing.assert_close(closed, recursive, atol=1e-10, rtol=0)
    scalar = torch.tensor(
        [[cox_de_boor(float(v), knots.tolist(), m, order) for m in range(n_basis)] for v in x[:, 0]],
        dtype=torch.float64,
    )
    torch.testing.assert_close(recursive[:, 0], scalar, atol=1e-12, rtol=0)


def test_basis_is_a_partition_of_unity_inside_the_grid():
    layer = KANLinear(4, 2, grid_size=5, spline_order=3, grid_range=(-2, 3))
    x = torch.rand(500, 4) * 5 - 2
    torch.testing.assert_close(layer.b_splines(x).sum(-1), torch.ones(500, 4), atol=1e-5, rtol=0)


@pytest.mark.parametrize("base", ["silu", "relu", "elu", "identity"])
@pytest.mark.parametrize("bias", [False, True])
def test_forward_equals_slow_reference(base, bias):
    torch.manual_seed(1)
    layer = KANLinear(5, 4, grid_size=4, spline_order=3, grid_range=(-1.5, 1.0), base_activation=base, bias=bias)
    if bias:
        with torch.no_grad():
            layer.bias.normal_()
    x = torch.randn(40, 5) * 1.3
    torch.testing.assert_close(layer(x).double(), reference_kan(layer, x), atol=1e-5, rtol=1e-5)


def test_forward_on_non_uniform_grid_uses_recursion_and_matches_reference():
    torch.manual_seed(2)
    layer = KANLinear(3, 2, grid_size=3, spline_order=2)
    with torch.no_grad():
        layer.grid.copy_(torch.sort(torch.randn(3, layer.grid.shape[1]) * 2, dim=1).values)
        layer.grid_is_uniform.fill_(False)
    x = torch.randn(30, 3)
    torch.testing.assert_close(layer(x).double(), reference_kan(layer, x), atol=1e-5, rtol=1e-5)


def test_forward_accepts_any_leading_shape_and_gradients_flow():
    layer = KANLinear(6, 3)
    x = torch.randn(2, 5, 6, requires_grad=True)
    out = layer(x)
    assert out.shape == (2, 5, 3)
    out.square().sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    assert layer.spline_weight.grad.abs().sum() > 0 and layer.base_weight.grad.abs().sum() > 0


def test_input_gradient_matches_finite_differences():
    torch.manual_seed(3)
    layer = KANLinear(4, 3, grid_size=3, spline_order=3, base_activation="elu").double()
    x = (torch.rand(8, 4, dtype=torch.float64) * 1.8 - 0.9).requires_grad_()
    assert torch.autograd.gradcheck(layer, (x,))


def test_parameter_count_matches_keras_efficient_kan():
    # (grid + order) spline coefficients + 1 base weight per edge, no bias
    assert sum(p.numel() for p in KANLinear(10, 7).parameters()) == 10 * 7 * (3 + 3 + 1)
    assert (
        sum(p.numel() for p in KANLinear(10, 7, grid_size=5, spline_order=2, bias=True).parameters()) == 10 * 7 * 8 + 7
    )


@pytest.mark.parametrize("bias", [False, True])
def test_edge_functions_sum_to_the_layer_output(bias):
    torch.manual_seed(4)
    layer = KANLinear(5, 3, grid_size=4, base_activation="silu", bias=bias)
    with torch.no_grad():
        if bias:
            layer.bias.normal_()
    x = torch.randn(64, 5)
    curves = layer.edge_functions(x)
    assert curves.base.shape == curves.spline.shape == curves.total.shape == (64, 3, 5)
    total = curves.total.sum(dim=2) + (layer.bias if bias else 0)
    torch.testing.assert_close(total, layer(x).detach(), atol=1e-5, rtol=1e-5)
    # the base part is exactly w_base * b(x) per edge
    torch.testing.assert_close(
        curves.base[:, 1, 2], layer.base_weight[1, 2].detach() * torch.nn.functional.silu(x[:, 2])
    )


def test_knots_are_uniform_and_cover_the_range():
    layer = KANLinear(3, 2, grid_size=4, spline_order=3, grid_range=(-2.0, 2.0))
    knots = layer.knots()
    assert knots.shape == (3, 4 + 2 * 3 + 1)
    torch.testing.assert_close(knots[0, 3], torch.tensor(-2.0))
    torch.testing.assert_close(knots[0, -4], torch.tensor(2.0))
    torch.testing.assert_close(knots.diff(dim=1), torch.full((3, 10), 1.0))
    knots += 5  # a copy: the layer's grid is unchanged
    assert layer.grid[0, 3] == -2.0


def test_grid_update_keeps_the_learned_function_on_the_data():
    torch.manual_seed(5)
    layer = KANLinear(3, 4, grid_size=5, spline_order=3, grid_range=(-1, 1))
    x = torch.randn(2000, 3) * torch.tensor([0.5, 1.0, 2.0]) + torch.tensor([0.0, 0.5, -1.0])
    with torch.no_grad():  # a smooth learned function inside the old range
        layer.spline_weight.normal_()
    inside = x.clamp(-0.95, 0.95)  # data within the old grid, so the old function is a spline on the new one too
    before = layer(inside).detach()
    layer.update_grid(inside)
    after = layer(inside).detach()
    # new grid spans the data (plus a 1% margin)
    assert layer.grid_coverage(inside).min() == 1.0
    active_low = layer.grid[:, layer.spline_order]
    assert torch.all(active_low <= inside.min(0).values) and torch.all(active_low > inside.min(0).values - 0.1)
    assert bool(layer.grid_is_uniform)
    rms = (after - before).square().mean().sqrt() / before.square().mean().sqrt()
    assert rms < 0.02, f"relative RMS change after grid update {rms:.4f}"


def test_grid_update_to_wider_data_covers_it_and_refits_well():
    torch.manual_seed(6)
    layer = KANLinear(2, 2, grid_size=8, spline_order=3)
    with torch.no_grad():  # a smooth learned function: coefficients that vary slowly along the grid
        m = torch.arange(layer.n_basis, dtype=torch.float32)
        layer.spline_weight.copy_(torch.stack([torch.sin(0.4 * m + p) for p in range(4)]).view(2, 2, -1))
    x = torch.rand(3000, 2) * 2.6 - 1.3  # 30% wider than the old active range [-1, 1]
    assert layer.grid_coverage(x).max() < 0.8
    before = layer(x).detach()
    layer.update_grid(x)
    assert torch.all(layer.grid_coverage(x) == 1.0)
    after = layer(x).detach()
    rms = (after - before).square().mean().sqrt() / before.square().mean().sqrt()
    assert rms < 0.05, f"relative RMS change after widening the grid {rms:.4f}"


def test_grid_update_rejects_too_few_samples():
    layer = KANLinear(3, 2, grid_size=3, spline_order=3)
    grid_before = layer.grid.clone()
    with pytest.raises(GridUpdateError, match=r"at least 6 samples.*got 4"):
        layer.update_grid(torch.randn(4, 3))
    assert torch.equal(layer.grid, grid_before)


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_grid_update_rejects_non_finite_samples(bad):
    layer = KANLinear(3, 2)
    x = torch.randn(50, 3)
    x[7, 1] = bad
    weights_before = layer.spline_weight.detach().clone()
    with pytest.raises(GridUpdateError, match="NaN or inf"):
        layer.update_grid(x)
    assert torch.equal(layer.spline_weight.detach(), weights_before)
    assert issubclass(GridUpdateError, KamoeError)


def test_grid_update_rejects_wrong_width():
    layer = KANLinear(3, 2)
    with pytest.raises(GridUpdateError, match="3 input features"):
        layer.update_grid(torch.randn(50, 4))


def test_grid_coverage_counts_samples_inside_the_active_range():
    layer = KANLinear(2, 1, grid_range=(-1, 1))
    x = torch.tensor([[0.0, 0.0], [0.5, 2.0], [-1.0, -3.0], [2.0, 0.9]])
    torch.testing.assert_close(layer.grid_coverage(x), torch.tensor([0.75, 0.5]))


def test_unknown_base_activation_is_rejected():
    with pytest.raises(ValueError, match="base activation must be one of"):
        KANLinear(2, 2, base_activation="tanh")
