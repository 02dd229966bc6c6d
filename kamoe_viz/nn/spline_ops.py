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
from functools import lru_cache

import torch
import torch.nn.functional as F
from torch.autograd.function import once_differentiable


@lru_cache(maxsize=None)
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
    """

    def __init__(self, order: int, in_features: int, n_basis: int, dtype: torch.dtype, device: torch.device):
        k = order
        self.order, self.in_features, self.n_basis = k, in_features, n_basis
        self.pad = k + 1
        self.block = n_basis + 2 * self.pad
        coeffs = torch.tensor(_piece_coefficients(k), dtype=torch.float64)
        self.values = coeffs.to(dtype=dtype, device=device)  # (k+1 pieces, k+1 powers)
        derivative = coeffs[:, 1:] * torch.arange(1, k + 1, dtype=torch.float64)  # d/du: (k+1 pieces, k powers)
        self.derivative_t = derivative.t().contiguous().to(dtype=dtype, device=device)  # (k, k+1)
        self.shifts = torch.arange(k + 1, device=device).view(-1, 1, 1)
        self.t_max = float(n_basis + k)  # t at the end of the knot span
        self._row_offsets: dict[tuple[int, int], torch.Tensor] = {}

    def offsets(self, n: int, row_width: int, first_column: int) -> torch.Tensor:
        """(k+1, n, in) int64: flat position, in an (n, row_width) matrix whose basis blocks start at column
        ``first_column``, of the slot that piece r of input i of row n fills when floor(t) = 0; adding floor(t)
        gives the slot. Cached per batch size (a training run sees one or two)."""
        key = (n, row_width, first_column)
        found = self._row_offsets.get(key)
        if found is None:
            if len(self._row_offsets) > 4:
                self._row_offsets.clear()
            device = self.shifts.device
            rows = torch.arange(n, device=device).view(-1, 1) * row_width
            cols = first_column + torch.arange(self.in_features, device=device) * self.block + self.pad
            found = (rows + cols).unsqueeze(0) - self.shifts
            if found.numel() <= 4_000_000:  # ~32 MB at most; larger (evaluation) batches are rare, not cached
                self._row_offsets[key] = found
        return found


_LAYOUTS: dict[tuple, _Layout] = {}


def layout(order: int, in_features: int, n_basis: int, like: torch.Tensor) -> _Layout:
    key = (order, in_features, n_basis, like.dtype, like.device)
    found = _LAYOUTS.get(key)
    if found is None:
        found = _LAYOUTS[key] = _Layout(order, in_features, n_basis, like.dtype, like.device)
    return found


def local_basis(x: torch.Tensor, shift: torch.Tensor, inv_step: torch.Tensor, lay: _Layout,
                row_width: int, first_column: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The k+1 nonzero basis values per input of a 2-D x (N, in), piece-major (k+1, N, in) so that every op runs
    on long contiguous rows (PyTorch's CPU kernels are slow on a trailing dimension of size k+1).

    Returns (index, values, powers): flat positions of the values in an (N, row_width) padded basis matrix,
    the values B_{floor(t)-r}(x), and the power table u^0..u^k (kept for the derivative). x outside the knot span
    (and NaN) maps entirely into zero-weight padding.
    """
    n = x.shape[0]
    k = lay.order
    t = torch.addcmul(shift, x, inv_step).clamp_(-1.0, lay.t_max).nan_to_num_(-1.0)  # (x - t_0) / h
    floor = torch.floor(t)
    u = t - floor
    columns = [torch.ones_like(u), u]
    for _ in range(2, k + 1):
        columns.append(columns[-1] * u)
    powers = torch.stack(columns[: k + 1])  # (k+1, N, in)
    values = torch.mm(lay.values, powers.view(k + 1, -1)).view_as(powers)
    index = torch.add(floor.to(torch.int64).unsqueeze(0), lay.offsets(n, row_width, first_column))
    return index, values, powers


def dense_basis(x: torch.Tensor, first_knot: torch.Tensor, step: torch.Tensor, n_basis: int,
                order: int) -> torch.Tensor:
    """Dense basis (N, in, n_basis) of a 2-D x on uniform knots t_m = first_knot + m * step (per input)."""
    n, in_features = x.shape
    lay = layout(order, in_features, n_basis, x)
    width = in_features * lay.block
    inv_step = 1.0 / step
    index, values, _ = local_basis(x, -first_knot * inv_step, inv_step, lay, width, 0)
    padded = x.new_zeros(n, in_features, lay.block)
    padded.view(-1).put_(index, values)
    return padded[:, :, lay.pad:lay.pad + n_basis].contiguous()


def _base_and_derivative(name: str, x: torch.Tensor, need_derivative: bool):
    if name == "silu":
        s = torch.sigmoid(x)
        value = x * s
        return value, (s * (1 + x * (1 - s)) if need_derivative else None)
    if name == "relu":
        value = torch.relu(x)
        return value, ((x > 0).to(x.dtype) if need_derivative else None)
    if name == "elu":
        value = F.elu(x)
        return value, (torch.where(x > 0, 1.0, value + 1) if need_derivative else None)
    if name == "identity":
        return x, (torch.ones_like(x) if need_derivative else None)
    raise ValueError(f"unknown base activation {name!r}")


class UniformKANFunction(torch.autograd.Function):
    """out = [base(x), B(x)] @ [base_weight, spline_weight]^T (+ bias) for x (N, in) on a uniform grid."""

    @staticmethod
    def forward(ctx, x, base_weight, spline_weight, bias, shift, inv_step, order: int, base: str):
        n, in_features = x.shape
        out_features, _, n_basis = spline_weight.shape
        lay = layout(order, in_features, n_basis, x)
        width = in_features * (1 + lay.block)
        index, values, powers = local_basis(x, shift, inv_step, lay, width, in_features)
        need_x = ctx.needs_input_grad[0]
        base_value, base_derivative = _base_and_derivative(base, x, need_x)
        features = x.new_zeros(n, width)
        features[:, :in_features] = base_value
        features.view(-1).put_(index, values)
        weight = base_weight.new_zeros(out_features, width)  # [base | zero-padded spline blocks]
        weight[:, :in_features].copy_(base_weight)
        weight[:, in_features:].view(out_features, in_features, lay.block)[:, :, lay.pad:lay.pad + n_basis].copy_(
            spline_weight)
        out = torch.mm(features, weight.t()) if bias is None else torch.addmm(bias, features, weight.t())
        if need_x:
            ctx.save_for_backward(features, weight, index, powers, base_derivative, inv_step)
        else:
            ctx.save_for_backward(features, weight)
        ctx.lay = lay
        ctx.has_bias = bias is not None
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out):
        lay = ctx.lay
        features, weight = ctx.saved_tensors[:2]
        in_features, n_basis, pad = lay.in_features, lay.n_basis, lay.pad
        out_features = weight.shape[0]
        grad_x = grad_base = grad_spline = grad_bias = None
        if ctx.needs_input_grad[1] or ctx.needs_input_grad[2]:
            grad_weight = torch.mm(grad_out.t(), features)
            grad_base = grad_weight[:, :in_features]
            grad_spline = grad_weight[:, in_features:].view(out_features, in_features, lay.block)[
                :, :, pad:pad + n_basis]
        if ctx.needs_input_grad[0]:
            _, _, index, powers, base_derivative, inv_step = ctx.saved_tensors
            k = lay.order
            grad_features = torch.mm(grad_out, weight)
            gathered = grad_features.view(-1).take(index)  # (k+1, N, in): dL/dB at each nonzero piece
            # dL/du = sum_r gathered_r * P_r'(u) = sum_p u^p * (D^T gathered)_p
            mixed = torch.mm(lay.derivative_t, gathered.view(k + 1, -1)).view(k, *gathered.shape[1:])
            grad_x = (mixed * powers[:k]).sum(0).mul_(inv_step)
            grad_x.addcmul_(grad_features[:, :in_features], base_derivative)
        if ctx.has_bias and ctx.needs_input_grad[3]:
            grad_bias = grad_out.sum(0)
        return grad_x, grad_base, grad_spline, grad_bias, None, None, None, None
