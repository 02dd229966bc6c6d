"""The three gate families. Same interface: gate(h) -> logits (..., E); a router
(:mod:`kamoe_viz.nn.routers`) turns the logits into the experts' weights.

- ``linear``: one Dense layer.
- ``grn``: the Temporal Fusion Transformer's gated residual network with hidden width E, as in the reference code:
  skip = Dense(h); eta = Dense(ELU(Dense(h))); dropout; GLU(eta) = Dense(eta) * sigmoid(Dense(eta));
  LayerNorm(skip + GLU(eta)).
- ``grkan``: the GRN with its two hidden Dense layers replaced by KAN layers (first with ELU base, second with a
  selectable base: ReLU in the reference code, SiLU in the paper).

Every layer is called as a module, so forward hooks on it fire (the GRKAN gate's fused native path, which bypasses
the modules, is used only while no hook is registered on the gate or its layers).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from kamoe_viz.config import GATE_FAMILIES
from kamoe_viz.errors import ValidationError
from kamoe_viz.nn.fast.fused_gate import grkan_logits
from kamoe_viz.nn.hooks import has_hooks
from kamoe_viz.nn.kan import KANLinear


def glorot_linear(in_features: int, out_features: int, bias: bool = True) -> nn.Linear:
    """nn.Linear with Keras' default init (Glorot uniform, zero bias), to match the reference."""
    layer = nn.Linear(in_features, out_features, bias=bias)
    nn.init.xavier_uniform_(layer.weight)
    if bias:
        nn.init.zeros_(layer.bias)
    return layer


class GLU(nn.Module):
    """Gated linear unit: Dense(x) * sigmoid(Dense(x)), both projections as one matmul."""

    def __init__(self, in_features: int, out_features: int) -> None:
        super().__init__()
        self.out_features = out_features
        self.proj = nn.Linear(in_features, 2 * out_features)
        # Two Glorot-initialised Dense layers side by side, as in the reference.
        limit = math.sqrt(6.0 / (in_features + out_features))
        nn.init.uniform_(self.proj.weight, -limit, limit)
        nn.init.zeros_(self.proj.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.glu(self.proj(x), dim=-1)  # value * sigmoid(gate), one op


class Gate(nn.Module):
    """Base class: subclasses compute ``logits(h)`` (..., E); ``forward`` is the same."""

    family = "base"

    def __init__(self, in_features: int, n_experts: int) -> None:
        super().__init__()
        self.in_features = in_features
        self.n_experts = n_experts

    def logits(self, h: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.logits(h)


class LinearGate(Gate):
    family = "linear"

    def __init__(self, in_features: int, n_experts: int) -> None:
        super().__init__(in_features, n_experts)
        self.dense = glorot_linear(in_features, n_experts)

    def logits(self, h: torch.Tensor) -> torch.Tensor:
        return self.dense(h)


class _GatedResidual(Gate):
    """LayerNorm(skip(h) + GLU(dropout(hidden_layers(h)))); subclasses define ``hidden_layers``."""

    def __init__(self, in_features: int, n_experts: int, dropout: float) -> None:
        super().__init__(in_features, n_experts)
        self.skip = glorot_linear(in_features, n_experts)
        self.dropout = nn.Dropout(dropout)
        self.glu = GLU(n_experts, n_experts)
        self.norm = nn.LayerNorm(n_experts, eps=1e-3)  # Keras LayerNormalization epsilon

    def hidden_layers(self, h: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def logits(self, h: torch.Tensor) -> torch.Tensor:
        eta = self.dropout(self.hidden_layers(h))
        return self.norm(self.skip(h) + self.glu(eta))


class GRNGate(_GatedResidual):
    family = "grn"

    def __init__(self, in_features: int, n_experts: int, dropout: float = 0.0) -> None:
        super().__init__(in_features, n_experts, dropout)
        self.dense1 = glorot_linear(in_features, n_experts)
        self.dense2 = glorot_linear(n_experts, n_experts)

    def hidden_layers(self, h: torch.Tensor) -> torch.Tensor:
        return self.dense2(F.elu(self.dense1(h)))


class GRKANGate(_GatedResidual):
    family = "grkan"

    def __init__(
        self,
        in_features: int,
        n_experts: int,
        dropout: float = 0.0,
        grid_size: int = 3,
        spline_order: int = 3,
        grid_range: tuple[float, float] = (-1.0, 1.0),
        second_base: str = "relu",
    ) -> None:
        super().__init__(in_features, n_experts, dropout)
        self.kan1 = KANLinear(
            in_features,
            n_experts,
            grid_size=grid_size,
            spline_order=spline_order,
            grid_range=grid_range,
            base_activation="elu",
            bias=False,
        )
        self.kan2 = KANLinear(
            n_experts,
            n_experts,
            grid_size=grid_size,
            spline_order=spline_order,
            grid_range=grid_range,
            base_activation=second_base,
            bias=False,
        )

    def hidden_layers(self, h: torch.Tensor) -> torch.Tensor:
        return self.kan2(self.kan1(h))

    def logits(self, h: torch.Tensor) -> torch.Tensor:
        # one autograd node on the native kernel where it applies; the modules one by one while hooks are on them
        fused = None if has_hooks(self) else grkan_logits(self, h)
        return fused if fused is not None else super().logits(h)


GATES: dict[str, type[Gate]] = {"linear": LinearGate, "grn": GRNGate, "grkan": GRKANGate}
assert tuple(GATES) == GATE_FAMILIES, "gate registry and config.GATE_FAMILIES must list the same families"
GATE_OPTIONS: dict[str, tuple[str, ...]] = {
    "linear": (),
    "grn": ("dropout",),
    "grkan": ("dropout", "grid_size", "spline_order", "grid_range", "second_base"),
}


def gate_options(config) -> dict[str, object]:
    """The options of ``config.gate``'s family, read from a ModelConfig."""
    values = {
        "dropout": config.dropout,
        "grid_size": config.kan_grid,
        "spline_order": config.kan_order,
        "grid_range": config.kan_range,
        "second_base": config.grkan_second_base,
    }
    return {name: values[name] for name in GATE_OPTIONS[config.gate]}


def build_gate(family: str, in_features: int, n_experts: int, **options: object) -> Gate:
    """Gate of the given family. Options by family (:data:`GATE_OPTIONS`): grn takes dropout; grkan takes dropout,
    grid_size, spline_order, grid_range, second_base; linear none. Any other option is refused."""
    cls = GATES.get(family)
    if cls is None:
        raise ValidationError("model.gate", family, f"must be one of {', '.join(GATES)}")
    unknown = sorted(set(options) - set(GATE_OPTIONS[family]))
    if unknown:
        allowed = ", ".join(GATE_OPTIONS[family]) or "none"
        raise ValidationError(
            f"gate option {unknown[0]}",
            options[unknown[0]],
            f"is not an option of the {family} gate (its options: {allowed})",
        )
    return cls(in_features, n_experts, **options)


def gate_parameter_count(gate: Gate) -> int:
    return sum(p.numel() for p in gate.parameters() if p.requires_grad)


__all__ = [
    "GATES",
    "GATE_OPTIONS",
    "GLU",
    "GRKANGate",
    "GRNGate",
    "Gate",
    "LinearGate",
    "build_gate",
    "gate_options",
    "gate_parameter_count",
    "has_hooks",
]
