"""B-spline kernels for KANLinear on uniform grids: only the k+1 nonzero basis functions per input, and a fused
KAN layer (basis + base + spline matmul) with a hand-written backward.

On a uniform grid t_m = t_0 + m*h, with t = (x - t_0)/h, f = floor(t) and u = t - f in [0, 1), the only nonzero
basis functions of order k at x are B_{f-r}(x) = P_r(u) for r = 0..k, where P_r is the piece of the cardinal
B-spline N_k on [r, r+1] written as a polynomial in u. Its coefficients are exact small rationals, computed once in
float64. A basis evaluation is then one floor, a power table u^0..u^k, one small matmul giving every P_r(u), and one
``put_`` of the k+1 values into the (padded) feature row the spline matmul reads; the backward needs one ``take``,
one small matmul for the P_r'(u) and a sum. Autograd over the old truncated-power formula recorded ~30 elementwise
ops per layer; the fused function does the whole layer in ~12 forward and ~8 backward ops.
"""

from __future__ import annotations

import math
from functools import cache

import torch
import torch.nn.functional as F
from torch.autograd.function import once_differentiable


@cache
def _piece_coefficients(order: int) -> tuple[tuple[float, ...], ...]:
    """C (k+1, k+1) with P_r(u) = sum_p C[r][p] u^p, the piece of the cardinal B-spline N_k on [r, r+1]."""
    k = order
    coeffs = [[0.0] * (k + 1) for _ in range(k + 1)]
    for r in range(k + 1):
        # N_k(s) = 1/k! sum_{m <= s} (-1)^m C(k+1, m) (s - m)^k, with s = u + r and m = 0..r active on [r, r+1)
        for m in range(r + 1):
            c = r - m  # (u + c)^k = sum_p C(k, p) c^(k-p) u^p
            for p in range(k + 1):
                coeffs[r][p] += (-1) ** m * math.comb(k + 1, m) * math.comb(k, p) * c ** (k - p) / math.factorial(k)
    return tuple(tuple(row) for row in coeffs)


class _Layout:
    """Constants of one (order, in_features, n_basis, dtype, device): the piece matrices and index offsets.

    Basis rows are padded: input i owns a block of ``n_basis + 2(k+1)`` slots whose slot ``j + k + 1`` holds
    B_j, so that pieces of basis functions that do not exist (j < 0 or j >= n_basis, near and beyond the ends of
    the knot span) land in padding slots whose weights are zero. That removes every per-piece validity test.
    Positions are computed from s = t + 1 clamped to [0, n_basis + k + 1], where truncation is the floor.
    """

    def __init__(self, order: int, in_features: int, n_basis: int, dtype: torch.dtype, device: torch.device):
        k = order
        self.order, self.in_features, self.n_basis = k, in_features, n_basis
        self.pad = k + 1
        self.block = n_basis + 2 * self.pad
        coeffs = torch.tensor(_piece_coefficients(k), dtype=torch.float64)  # (k+1 pieces, k+1 powers)
        derivative = torch.zeros_like(coeffs)  # d/du, same powers layout (u^k column is zero)
        derivative[:, :k] = coeffs[:, 1:] * torch.arange(1, k + 1, dtype=torch.float64)
        both = torch.cat([coeffs, derivative])  # (2(k+1), k+1): values then derivatives
        # [P | P'] (2(k+1), M) = constant column + coefficients @ [u, u^2, .., u^k] (k, M)
        self.constant = both[:, :1].to(dtype=dtype, device=device)
        self.linear = both[:, 1:].contiguous().to(dtype=dtype, device=device)
        self.s_max = float(n_basis + k + 1)
        self._row_offsets: dict[tuple[int, int, int], torch.Tensor] = {}

    def offsets(self, n: int, row_width: int, first_column: int) -> torch.Tensor:
        """(k+1, n, in) int64: flat position, in an (n, row_width) matrix whose basis blocks start at column
        ``first_column``, of the slot that piece r of input i of row n fills when floor(s) = 0; adding floor(s)
        gives the slot. Cached per batch size (a training run sees one or two)."""
        key = (n, row_width, first_column)
        found = self._row_offsets.get(key)
        if found is None:
            if len(self._row_offsets) > 4:
                self._row_offsets.clear()
            device = self.constant.device
            rows = torch.arange(n, device=device).view(-1, 1) * row_width
            # floor(s) = floor(t) + 1 and piece r of B_{floor(t) - r} sits in slot floor(t) - r + pad
            cols = first_column + torch.arange(self.in_features, device=device) * self.block + self.pad - 1
            shifts = torch.arange(self.order + 1, device=device).view(-1, 1, 1)
            found = (rows + cols).unsqueeze(0) - shifts
            if found.numel() <= 1_000_000:  # 8 MB at most; larger (evaluation) batches are not cached
                self._row_offsets[key] = found
        return found


_LAYOUTS: dict[tuple, _Layout] = {}


def layout(order: int, in_features: int, n_basis: int, like: torch.Tensor) -> _Layout:
    key = (order, in_features, n_basis, like.dtype, like.device)
    found = _LAYOUTS.get(key)
    if found is None:
        found = _LAYOUTS[key] = _Layout(order, in_features, n_basis, like.dtype, like.device)
    return found


def local_basis(
    x: torch.Tensor,
    shift: torch.Tensor,
    inv_step: torch.Tensor,
    lay: _Layout,
    row_width: int,
    first_column: int,
    with_derivative: bool,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """The k+1 nonzero basis values per input of a 2-D x (N, in), piece-major (k+1, N, in) so that every op runs
    on long contiguous rows (PyTorch's CPU kernels are slow on a trailing dimension of size k+1).

    ``shift``/``inv_step`` give s = t + 1 = shift + x * inv_step, t = (x - t_0) / h. Returns (index, values,
    derivative): flat positions in an (N, row_width) padded basis matrix, the values B_{floor(t)-r}(x) and, if
    asked, their derivatives in u (multiply by inv_step for d/dx). x outside the knot span (and NaN) maps entirely
    into zero-weight padding.
    """
    k = lay.order
    s = torch.addcmul(shift, x, inv_step).clamp_(0.0, lay.s_max).nan_to_num_(0.0)
    whole = s.to(torch.int64)  # floor, as s >= 0
    u = s - whole
    columns = [u]
    for _ in range(2, k + 1):
        columns.append(columns[-1] * u)
    powers = torch.stack(columns) if k > 1 else u.unsqueeze(0)  # (k, N, in): u^1 .. u^k
    rows = 2 * (k + 1) if with_derivative else k + 1
    table = torch.addmm(lay.constant[:rows], lay.linear[:rows], powers.view(k, -1)).view(rows, *u.shape)
    index = torch.add(lay.offsets(x.shape[0], row_width, first_column), whole)
    return index, table[: k + 1], (table[k + 1 :] if with_derivative else None)


def dense_basis(
    x: torch.Tensor, first_knot: torch.Tensor, step: torch.Tensor, n_basis: int, order: int
) -> torch.Tensor:
    """Dense basis (N, in, n_basis) of a 2-D x on uniform knots t_m = first_knot + m * step (per input)."""
    n, in_features = x.shape
    lay = layout(order, in_features, n_basis, x)
    inv_step = 1.0 / step
    index, values, _ = local_basis(
        x, 1.0 - first_knot * inv_step, inv_step, lay, in_features * lay.block, 0, with_derivative=False
    )
    padded = x.new_zeros(n, in_features, lay.block)
    padded.view(-1).put_(index, values)
    return padded[:, :, lay.pad : lay.pad + n_basis].contiguous()


def _base(name: str, x: torch.Tensor) -> torch.Tensor:
    if name == "silu":
        return F.silu(x)
    if name == "relu":
        return torch.relu(x)
    if name == "elu":
        return F.elu(x)
    if name == "identity":
        return x
    raise ValueError(f"unknown base activation {name!r}")


def _base_derivative(name: str, x: torch.Tensor, value: torch.Tensor) -> torch.Tensor:
    if name == "silu":
        s = torch.sigmoid(x)
        return s * (1 + x * (1 - s))
    if name == "relu":
        return x > 0
    if name == "elu":
        return torch.where(x > 0, 1.0, value + 1)
    return torch.ones_like(x)


def uniform_kan_forward(
    x, base_weight, spline_weight, bias, shift, inv_step, order: int, base: str, need_x: bool = True
):
    """out = [base(x), B(x)] @ [base_weight, spline_weight]^T (+ bias) for x (N, in) on a uniform grid, and the
    state :func:`uniform_kan_backward` needs (a tuple of tensors and the layout)."""
    n, in_features = x.shape
    out_features, _, n_basis = spline_weight.shape
    lay = layout(order, in_features, n_basis, x)
    width = in_features * (1 + lay.block)
    index, values, derivative = local_basis(x, shift, inv_step, lay, width, in_features, need_x)
    base_value = _base(base, x)
    features = x.new_zeros(n, width)
    features[:, :in_features] = base_value
    features.view(-1).put_(index, values)
    weight = torch.cat([base_weight, F.pad(spline_weight, (lay.pad, lay.pad)).view(out_features, -1)], dim=1)
    out = F.linear(features, weight, bias)
    saved: tuple[torch.Tensor | None, ...]
    if need_x:
        saved = (features, weight, index, derivative, inv_step, _base_derivative(base, x, base_value))
    else:
        saved = (features, weight)
    return out, (saved, lay)


def uniform_kan_backward(state, grad_out, need_x: bool = True, need_weights: bool = True, need_bias: bool = False):
    """(grad_x, grad_base_weight, grad_spline_weight, grad_bias) of :func:`uniform_kan_forward` (None where not
    needed; the weight gradients are views into one tensor)."""
    saved, lay = state
    features, weight = saved[0], saved[1]
    in_features = lay.in_features
    grad_x = grad_base = grad_spline = grad_bias = None
    if need_weights:
        grad_weight = torch.mm(grad_out.t(), features)
        grad_base = grad_weight[:, :in_features]
        grad_spline = grad_weight[:, in_features:].view(weight.shape[0], in_features, lay.block)[
            :, :, lay.pad : lay.pad + lay.n_basis
        ]
    if need_x:
        index, derivative, inv_step, base_derivative = saved[2:]
        grad_features = torch.mm(grad_out, weight)
        # dL/dx = inv_step * sum_r dL/dB_r * P_r'(u) + dL/dbase * base'(x)
        gathered = grad_features.view(-1).take(index)  # (k+1, N, in)
        grad_x = gathered.mul_(derivative).sum(0).mul_(inv_step)
        grad_x.addcmul_(grad_features[:, :in_features], base_derivative)
    if need_bias:
        grad_bias = grad_out.sum(0)
    return grad_x, grad_base, grad_spline, grad_bias


class UniformKANFunction(torch.autograd.Function):
    """:func:`uniform_kan_forward` as one autograd node, with :func:`uniform_kan_backward` as its backward."""

    @staticmethod
    def forward(ctx, x, base_weight, spline_weight, bias, shift, inv_step, order: int, base: str):
        out, (saved, lay) = uniform_kan_forward(
            x, base_weight, spline_weight, bias, shift, inv_step, order, base, ctx.needs_input_grad[0]
        )
        ctx.save_for_backward(*saved)
        ctx.lay = lay
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out):
        needs = ctx.needs_input_grad
        grads = uniform_kan_backward((ctx.saved_tensors, ctx.lay), grad_out, needs[0], needs[1] or needs[2], needs[3])
        return (*grads, None, None, None, None)
