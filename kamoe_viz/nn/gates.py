"""The three gate families. Same interface: gate(h) -> weights (..., E).

- ``linear``: one Dense layer, then the output activation.
- ``grn``: the Temporal Fusion Transformer's gated residual network with hidden width E, as in the reference code:
  skip = Dense(h); eta = Dense(ELU(Dense(h))); dropout; GLU(eta) = Dense(eta) * sigmoid(Dense(eta));
  LayerNorm(skip + GLU(eta)); output activation.
- ``grkan``: the GRN with its two hidden Dense layers replaced by KAN layers (first with ELU base, second with a
  selectable base: ReLU in the reference code, SiLU in the paper).

Output activation ``sigmoid`` (reference; weights need not sum to 1) or ``softmax`` (they do). Optional top-k keeps
the k largest weights per row and zeroes the rest (softmax is renormalised over the k kept).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from kamoe_viz.config import GATE_FAMILIES
from kamoe_viz.nn.fused_gate import grkan_logits
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
        return F.glu(F.linear(x, self.proj.weight, self.proj.bias), dim=-1)  # value * sigmoid(gate), one op


class Gate(nn.Module):
    """Base class: subclasses compute logits (..., E); this applies the output activation and top-k."""

    family = "base"

    def __init__(self, in_features: int, n_experts: int, activation: str = "sigmoid", top_k: int = 0) -> None:
        super().__init__()
        if activation not in ("sigmoid", "softmax"):
            raise ValueError(f"gate activation must be sigmoid or softmax, got {activation!r}")
        self.in_features = in_features
        self.n_experts = n_experts
        self.activation = activation
        self.top_k = top_k

    def logits(self, h: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        logits = self.logits(h)
        if self.top_k and self.top_k < self.n_experts:
            # exactly k per row, also when logits tie (a >= threshold test would keep every tied expert)
            kept = logits.topk(self.top_k, dim=-1).indices
            keep = torch.zeros_like(logits, dtype=torch.bool).scatter_(-1, kept, True)
            if self.activation == "softmax":
                return torch.softmax(logits.masked_fill(~keep, float("-inf")), dim=-1)
            return torch.sigmoid(logits) * keep
        if self.activation == "softmax":
            return torch.softmax(logits, dim=-1)
        return torch.sigmoid(logits)


class LinearGate(Gate):
    family = "linear"

    def __init__(self, in_features: int, n_experts: int, activation: str = "sigmoid", top_k: int = 0,
                 **_: object) -> None:
        super().__init__(in_features, n_experts, activation, top_k)
        self.dense = glorot_linear(in_features, n_experts)

    def logits(self, h: torch.Tensor) -> torch.Tensor:
        return F.linear(h, self.dense.weight, self.dense.bias)


class _GatedResidual(Gate):
    """LayerNorm(skip(h) + GLU(dropout(hidden_layers(h)))); subclasses define ``hidden_layers``."""

    def __init__(self, in_features: int, n_experts: int, activation: str, top_k: int, dropout: float) -> None:
        super().__init__(in_features, n_experts, activation, top_k)
        self.skip = glorot_linear(in_features, n_experts)
        self.dropout = nn.Dropout(dropout)
        self.glu = GLU(n_experts, n_experts)
        self.norm = nn.LayerNorm(n_experts, eps=1e-3)  # Keras LayerNormalization epsilon

    def logits(self, h: torch.Tensor) -> torch.Tensor:
        eta = self.hidden_layers(h)
        if self.dropout.p > 0 and self.training:
            eta = self.dropout(eta)
        z = F.linear(h, self.skip.weight, self.skip.bias) + self.glu(eta)
        return F.layer_norm(z, self.norm.normalized_shape, self.norm.weight, self.norm.bias, self.norm.eps)


class GRNGate(_GatedResidual):
    family = "grn"

    def __init__(self, in_features: int, n_experts: int, activation: str = "sigmoid", top_k: int = 0,
                 dropout: float = 0.0, **_: object) -> None:
        super().__init__(in_features, n_experts, activation, top_k, dropout)
        self.dense1 = glorot_linear(in_features, n_experts)
        self.dense2 = glorot_linear(n_experts, n_experts)

    def hidden_layers(self, h: torch.Tensor) -> torch.Tensor:
        return F.linear(F.elu(F.linear(h, self.dense1.weight, self.dense1.bias)), self.dense2.weight,
                        self.dense2.bias)


class GRKANGate(_GatedResidual):
    family = "grkan"

    def __init__(self, in_features: int, n_experts: int, activation: str = "sigmoid", top_k: int = 0,
                 dropout: float = 0.0, grid_size: int = 3, spline_order: int = 3,
                 grid_range: tuple[float, float] = (-1.0, 1.0), second_base: str = "relu", **_: object) -> None:
        super().__init__(in_features, n_experts, activation, top_k, dropout)
        kan = dict(grid_size=grid_size, spline_order=spline_order, grid_range=grid_range, bias=False)
        self.kan1 = KANLinear(in_features, n_experts, base_activation="elu", **kan)
        self.kan2 = KANLinear(n_experts, n_experts, base_activation=second_base, **kan)

    def hidden_layers(self, h: torch.Tensor) -> torch.Tensor:
        return self.kan2(self.kan1(h))

    def logits(self, h: torch.Tensor) -> torch.Tensor:
        fused = grkan_logits(self, h)  # one autograd node on the native kernel, where it applies
        return fused if fused is not None else super().logits(h)


GATES: dict[str, type[Gate]] = {"linear": LinearGate, "grn": GRNGate, "grkan": GRKANGate}
assert tuple(GATES) == GATE_FAMILIES, "gate registry and config.GATE_FAMILIES must list the same families"


def build_gate(family: str, in_features: int, n_experts: int, **options: object) -> Gate:
    """Gate of the given family; options: activation, top_k, dropout, grid_size, spline_order, grid_range,
    second_base (unused options are ignored by families that have no such setting)."""
    try:
        cls = GATES[family]
    except KeyError:
        raise ValueError(f"gate family must be one of {', '.join(GATES)}, got {family!r}") from None
    return cls(in_features, n_experts, **options)


def gate_parameter_count(gate: Gate) -> int:
    return sum(p.numel() for p in gate.parameters() if p.requires_grad)


__all__ = ["GATES", "GLU", "Gate", "GRKANGate", "GRNGate", "LinearGate", "build_gate", "gate_parameter_count"]
