"""KANLinear: a Kolmogorov-Arnold layer with B-spline edges, in the style of efficient-kan.

Each edge i -> j computes phi_ij(x_i) = w_base[j, i] * base(x_i) + sum_k c[j, i, k] * B_k(x_i) and output j is
sum_i phi_ij(x_i) (+ bias_j). With the reference settings (grid 3, order 3, no bias) an edge holds 1 + 6 = 7
trainable numbers, as in keras-efficient-kan, which the original KAMoE code uses.

Speed: when every input's grid is uniform (the default, and what :meth:`update_grid` produces) the basis is
evaluated in closed form (the pieces of the cardinal B-spline) instead of the Cox-de Boor recursion. On the CPU in
float32 the whole layer runs in the native C kernel (:mod:`kamoe_viz.nn.fast.native`) once it is built; otherwise,
and on GPUs, in :class:`~kamoe_viz.nn.spline_ops.UniformKANFunction`, where the base and spline terms go through one
matmul. Both give the same outputs and gradients to float rounding (tests/test_native_kan.py). With the fast paths
off (:func:`kamoe_viz.nn.fast.enabled`) the layer is plain PyTorch ops: basis matrix, one linear, autograd.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypedDict

import torch
import torch.nn.functional as F
from torch import nn

from kamoe_viz.errors import GridUpdateError
from kamoe_viz.nn import fast
from kamoe_viz.nn.fast import native
from kamoe_viz.nn.spline_ops import UniformKANFunction, dense_basis

# Devices whose kernels the fused KAN function is tested on (put_/take/addmm); others use plain autograd.
_FUSED_DEVICES = ("cpu", "cuda")
_INFERENCE_CHUNK = 1024  # rows per chunk for large no-grad batches

_BASE_ACTIVATIONS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "silu": F.silu,
    "relu": F.relu,
    "elu": F.elu,
    "identity": lambda x: x,
}


class KanOptions(TypedDict, total=False):
    """Keyword options of :class:`KANLinear` that banks of KAN layers pass through (all optional)."""

    grid_size: int
    spline_order: int
    grid_range: tuple[float, float]
    base_activation: str


def base_activation(name: str) -> Callable[[torch.Tensor], torch.Tensor]:
    """The base function b(x) of a KAN edge, by name (silu, relu, elu, identity)."""
    try:
        return _BASE_ACTIVATIONS[name]
    except KeyError:
        raise ValueError(f"base activation must be one of {', '.join(_BASE_ACTIVATIONS)}, got {name!r}") from None


def uniform_knots(
    low: float, high: float, grid_size: int, spline_order: int, dtype: torch.dtype = torch.float32
) -> torch.Tensor:
    """grid_size + 2*order + 1 equally spaced knots covering [low, high] with ``order`` extra on each side
    (computed in float64, then rounded once to ``dtype``)."""
    h = (high - low) / grid_size
    steps = torch.arange(-spline_order, grid_size + spline_order + 1, dtype=torch.float64)
    return (low + steps * h).to(dtype)


def bspline_basis_recursive(x: torch.Tensor, knots: torch.Tensor, spline_order: int) -> torch.Tensor:
    """Cox-de Boor recursion for any (also non-uniform) knots.

    x: (N, in); knots: (in, G + 2k + 1) -> (N, in, G + k). The straightforward reference computation.
    """
    x = x.unsqueeze(-1)
    bases = ((x >= knots[:, :-1]) & (x < knots[:, 1:])).to(x.dtype)
    for k in range(1, spline_order + 1):
        left = (x - knots[:, : -(k + 1)]) / (knots[:, k:-1] - knots[:, : -(k + 1)])
        right = (knots[:, k + 1 :] - x) / (knots[:, k + 1 :] - knots[:, 1:(-k)])
        bases = left * bases[..., :-1] + right * bases[..., 1:]
    return bases


def bspline_basis_uniform(
    x: torch.Tensor, first_knot: torch.Tensor, step: torch.Tensor, n_basis: int, spline_order: int
) -> torch.Tensor:
    """Closed-form basis for uniform knots t_m = first_knot + m * step (per input): (N, in) -> (N, in, n_basis).

    Only the k+1 nonzero functions per input are evaluated, from the polynomial pieces of the cardinal B-spline
    (see :mod:`kamoe_viz.nn.spline_ops`); equal to :func:`bspline_basis_recursive` to float rounding.
    """
    return dense_basis(x, first_knot, step, n_basis, spline_order)


@dataclass
class EdgeCurves:
    """Every edge's function on an x grid: tensors of shape (G, out, in); total = base + spline."""

    x: torch.Tensor  # (G, in)
    base: torch.Tensor
    spline: torch.Tensor

    @property
    def total(self) -> torch.Tensor:
        return self.base + self.spline


class KANLinear(nn.Module):
    """B-spline KAN layer mapping (..., in_features) -> (..., out_features)."""

    def __init__(
        self,
        in_features: int,
        out_features: int,
        grid_size: int = 3,
        spline_order: int = 3,
        grid_range: tuple[float, float] = (-1.0, 1.0),
        base_activation: str = "silu",
        bias: bool = False,
    ) -> None:
        super().__init__()
        self.in_features = in_features
        self.out_features = out_features
        self.grid_size = grid_size
        self.spline_order = spline_order
        self.grid_range = (float(grid_range[0]), float(grid_range[1]))
        self.base_activation_name = base_activation
        self._base = globals()["base_activation"](base_activation)
        knots = uniform_knots(*self.grid_range, grid_size, spline_order)
        self.grid: torch.Tensor
        self.grid_is_uniform: torch.Tensor
        self.register_buffer("grid", knots.expand(in_features, -1).contiguous())
        self.register_buffer("grid_is_uniform", torch.tensor(True))
        n_basis = grid_size + spline_order
        self.base_weight = nn.Parameter(torch.empty(out_features, in_features))
        self.spline_weight = nn.Parameter(torch.empty(out_features, in_features, n_basis))
        self.bias: nn.Parameter | None = nn.Parameter(torch.zeros(out_features)) if bias else None
        self.reset_parameters()

    @property
    def n_basis(self) -> int:
        return self.grid_size + self.spline_order

    def reset_parameters(self) -> None:
        """Glorot-uniform on both weights, as keras-efficient-kan initialises them."""
        limit = math.sqrt(6.0 / (self.in_features + self.out_features))
        nn.init.uniform_(self.base_weight, -limit, limit)
        spline_limit = math.sqrt(6.0 / (self.in_features * self.n_basis + self.out_features))
        nn.init.uniform_(self.spline_weight, -spline_limit, spline_limit)
        if self.bias is not None:
            nn.init.zeros_(self.bias)

    def extra_repr(self) -> str:
        return (
            f"in={self.in_features}, out={self.out_features}, grid={self.grid_size}, order={self.spline_order}, "
            f"range={self.grid_range}, base={self.base_activation_name}, bias={self.bias is not None}"
        )

    # ----- basis --------------------------------------------------------------------------------------------------
    def _uniform_knots(self) -> tuple[torch.Tensor, ...] | None:
        """(shift, 1/step, first knot, step) per input when the grid is uniform, else None. Cached until the grid
        buffers change (update_grid, load_state_dict, .to()), so the hot path neither recomputes them nor syncs a GPU
        on the flag."""
        grid, flag = self.grid, self.grid_is_uniform
        cached = self.__dict__.get("_knot_cache")
        if (
            cached is None
            or cached[0] is not grid
            or cached[1] != grid._version
            or cached[2] is not flag
            or cached[3] != flag._version
        ):
            value = None
            if bool(flag):
                step = grid[:, 1] - grid[:, 0]
                inv_step = 1.0 / step
                # s = t + 1 = shift + x * inv_step with t = (x - t_0) / h, as spline_ops.local_basis wants it
                value = (1.0 - grid[:, 0] * inv_step, inv_step, grid[:, 0].contiguous(), step)
            cached = (grid, grid._version, flag, flag._version, value)
            self.__dict__["_knot_cache"] = cached
        return cached[4]

    def _native_kernel(self, flat: torch.Tensor):
        """The C kernel when it is built and applies to this call (CPU float32), else None."""
        if not native.supports(
            flat, self.base_weight, self.spline_weight, self.spline_order, self.base_activation_name
        ):
            return None
        return native.active()

    def _fused(self, flat: torch.Tensor, knots: tuple[torch.Tensor, ...]) -> torch.Tensor:
        return UniformKANFunction.apply(
            flat,
            self.base_weight,
            self.spline_weight,
            self.bias,
            knots[0],
            knots[1],
            self.spline_order,
            self.base_activation_name,
        )

    def b_splines(self, x: torch.Tensor) -> torch.Tensor:
        """B-spline basis of a 2-D input (N, in) -> (N, in, n_basis)."""
        knots = self._uniform_knots()
        if knots is not None and x.device.type in _FUSED_DEVICES:
            return dense_basis(x, knots[2], knots[3], self.n_basis, self.spline_order)
        return bspline_basis_recursive(x, self.grid, self.spline_order)

    # ----- forward ------------------------------------------------------------------------------------------------
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = x.shape
        flat = x if x.dim() == 2 else x.reshape(-1, self.in_features)
        knots = self._uniform_knots()
        kernel = self._native_kernel(flat) if knots is not None else None
        if (
            kernel is not None and knots is not None
        ):  # one pass over the rows, no intermediate matrices: no chunking needed
            out = native.NativeKANFunction.apply(
                kernel,
                flat,
                self.base_weight,
                self.spline_weight,
                self.bias,
                knots[0],
                knots[1],
                self.spline_order,
                self.base_activation_name,
            )
        elif knots is not None and flat.device.type in _FUSED_DEVICES and fast.enabled():
            if not torch.is_grad_enabled() and flat.shape[0] > _INFERENCE_CHUNK:
                # inference on many rows (evaluation, plots): in chunks, so the padded feature rows of all rows
                # never exist at once (peak memory); nothing is kept for a backward pass anyway
                out = torch.cat([self._fused(part, knots) for part in flat.split(_INFERENCE_CHUNK)])
            else:
                out = self._fused(flat, knots)
        else:
            features = torch.cat([self._base(flat), self.b_splines(flat).flatten(1)], dim=1)
            weight = torch.cat([self.base_weight, self.spline_weight.flatten(1)], dim=1)
            out = F.linear(features, weight, self.bias)
        return out if x.dim() == 2 else out.reshape(*shape[:-1], self.out_features)

    # ----- inspection ---------------------------------------------------------------------------------------------
    def knots(self) -> torch.Tensor:
        """Knot positions per input, (in, grid_size + 2*order + 1)."""
        return self.grid.detach().clone()

    @torch.no_grad()
    def edge_functions(self, x: torch.Tensor) -> EdgeCurves:
        """phi_ij on given points x (G, in): base and spline parts, each (G, out, in).

        Summing ``total`` over inputs (dim 2) and adding the bias gives exactly the layer's output for x.
        """
        x = x.reshape(-1, self.in_features).to(self.base_weight.dtype)
        base = self._base(x).unsqueeze(1) * self.base_weight.unsqueeze(0)
        spline = torch.einsum("gik,oik->goi", self.b_splines(x), self.spline_weight)
        return EdgeCurves(x=x, base=base, spline=spline)

    # ----- grid update --------------------------------------------------------------------------------------------
    @torch.no_grad()
    def update_grid(self, x: torch.Tensor, margin: float = 0.01) -> None:
        """Move each input's uniform grid to cover the samples x (N, in), refitting the spline coefficients by least
        squares so the learned function is kept on the data. Raises :class:`GridUpdateError` when it cannot."""
        if x.shape[-1] != self.in_features:
            raise GridUpdateError(
                f"grid update samples must have {self.in_features} input features (last dimension), "
                f"got shape {tuple(x.shape)}"
            )
        x = x.reshape(-1, self.in_features).to(self.grid.dtype)
        if x.shape[0] < self.n_basis:
            raise GridUpdateError(
                f"grid update needs at least {self.n_basis} samples (grid size + spline order), got {x.shape[0]}"
            )
        if not torch.isfinite(x).all():
            raise GridUpdateError("grid update samples contain NaN or inf; check the input data")
        old_values = torch.einsum("nik,oik->ino", self.b_splines(x), self.spline_weight)  # (in, N, out)
        low = x.min(dim=0).values
        high = x.max(dim=0).values
        span = (high - low).clamp(min=1e-3)
        low, high = low - margin * span, high + margin * span
        step = (high - low) / self.grid_size
        steps = torch.arange(-self.spline_order, self.grid_size + self.spline_order + 1, dtype=x.dtype, device=x.device)
        new_grid = low.unsqueeze(1) + steps.unsqueeze(0) * step.unsqueeze(1)
        old_grid = self.grid.clone()
        self.grid.copy_(new_grid)
        self.grid_is_uniform.fill_(True)
        basis = self.b_splines(x).permute(1, 0, 2)  # (in, N, n_basis)
        try:
            solution = torch.linalg.lstsq(basis.cpu(), old_values.cpu(), driver="gelsd").solution
        except RuntimeError as error:  # pragma: no cover - depends on LAPACK failure modes
            self.grid.copy_(old_grid)
            raise GridUpdateError(f"least-squares refit of the spline coefficients failed: {error}") from error
        if not torch.isfinite(solution).all():
            self.grid.copy_(old_grid)
            raise GridUpdateError("least-squares refit gave non-finite coefficients; the grid was left unchanged")
        self.spline_weight.copy_(solution.to(self.spline_weight.device).permute(2, 0, 1))

    def grid_coverage(self, x: torch.Tensor) -> torch.Tensor:
        """Fraction of samples inside the active grid range [knot_k, knot_-k-1], per input (in,)."""
        x = x.reshape(-1, self.in_features)
        low = self.grid[:, self.spline_order]
        high = self.grid[:, -self.spline_order - 1]
        inside = (x >= low) & (x <= high)
        return inside.float().mean(dim=0)
