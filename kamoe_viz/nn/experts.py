"""Expert banks: E experts of one type evaluated together, returning hidden outputs (B, E, H) or (B, T, E, H).

All experts of a bank read the same input, so their first layers are fused into one wide layer (one matmul for E
MLPs, one basis evaluation + one matmul for E KANs); deeper MLP layers run as one batched matmul over experts.
Recurrent experts (LSTM, GRU) run one cuDNN/MKL kernel each.
"""

from __future__ import annotations

import math
from itertools import pairwise
from typing import Unpack, cast

import torch
import torch.nn.functional as F
from torch import nn

from kamoe_viz.nn.kan import KANLinear, KanOptions


class MLPExperts(nn.Module):
    """E MLPs with ReLU after every layer (the reference expert is Dense(100, relu))."""

    def __init__(self, in_features: int, n_experts: int, hidden: tuple[int, ...]) -> None:
        super().__init__()
        self.n_experts = n_experts
        self.hidden = tuple(hidden)
        self.first = nn.Linear(in_features, n_experts * hidden[0])
        self._glorot(self.first.weight, in_features, hidden[0])
        nn.init.zeros_(self.first.bias)
        self.weights = nn.ParameterList()
        self.biases = nn.ParameterList()
        for width_in, width_out in pairwise(hidden):
            weight = torch.empty(n_experts, width_in, width_out)
            self._glorot(weight, width_in, width_out)
            self.weights.append(nn.Parameter(weight))
            self.biases.append(nn.Parameter(torch.zeros(n_experts, 1, width_out)))

    @staticmethod
    def _glorot(tensor: torch.Tensor, fan_in: int, fan_out: int) -> None:
        limit = math.sqrt(6.0 / (fan_in + fan_out))
        with torch.no_grad():
            tensor.uniform_(-limit, limit)

    @property
    def out_features(self) -> int:
        return self.hidden[-1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch = x.shape[0]
        z = torch.relu(self.first(x)).view(batch, self.n_experts, self.hidden[0])  # called as a module: hooks fire
        if len(self.weights):
            z = z.transpose(0, 1)  # (E, B, H)
            for weight, bias in zip(self.weights, self.biases):
                z = F.relu(torch.baddbmm(bias, z, weight))
            z = z.transpose(0, 1)
        return z  # (B, E, H)


class KANExperts(nn.Module):
    """E KANs; the first KAN layer of all experts is one KANLinear of width E*H, deeper layers are per expert."""

    def __init__(
        self, in_features: int, n_experts: int, hidden: tuple[int, ...], **kan_options: Unpack[KanOptions]
    ) -> None:
        super().__init__()
        self.n_experts = n_experts
        self.hidden = tuple(hidden)
        self.first = KANLinear(in_features, n_experts * hidden[0], **kan_options)
        self.deeper = (
            nn.ModuleList(
                nn.ModuleList(KANLinear(a, b, **kan_options) for a, b in pairwise(hidden)) for _ in range(n_experts)
            )
            if len(hidden) > 1
            else nn.ModuleList()
        )

    @property
    def out_features(self) -> int:
        return self.hidden[-1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch = x.shape[0]
        z = self.first(x).view(batch, self.n_experts, self.hidden[0])
        if len(self.deeper):
            outs = []
            for e, layers in enumerate(self.deeper):
                ze = z[:, e]
                for layer in cast(nn.ModuleList, layers):
                    ze = layer(ze)
                outs.append(ze)
            z = torch.stack(outs, dim=1)
        return z

    def kan_layers(self, bank: str = "experts", one: str = "expert") -> list[tuple[str, KANLinear, int | None]]:
        """(name, layer, expert) for every KAN layer; expert None means the fused first layer, whose outputs
        e*H .. (e+1)*H-1 belong to expert e. ``bank`` / ``one``: how the bank and one of its experts are named
        ("shared" / "shared" for the shared experts)."""
        layers: list[tuple[str, KANLinear, int | None]] = [(f"{bank}.layer1 (all {bank})", self.first, None)]
        for e, stack in enumerate(self.deeper):
            for depth, layer in enumerate(cast(nn.ModuleList, stack), start=2):
                layers.append((f"{one}{e}.layer{depth}", cast(KANLinear, layer), e))
        return layers


class RecurrentExperts(nn.Module):
    """E LSTMs or GRUs (stacked for several widths); (B, T, F) -> last step (B, E, H) or every step (B, T, E, H)."""

    def __init__(
        self, in_features: int, n_experts: int, hidden: tuple[int, ...], cell: str, return_sequences: bool = False
    ) -> None:
        super().__init__()
        rnn_cls = {"lstm": nn.LSTM, "gru": nn.GRU}[cell]
        self.n_experts = n_experts
        self.hidden = tuple(hidden)
        self.return_sequences = return_sequences
        self.experts = nn.ModuleList()
        for _ in range(n_experts):
            widths = (in_features,) + self.hidden
            self.experts.append(nn.ModuleList(rnn_cls(a, b, batch_first=True) for a, b in pairwise(widths)))

    @property
    def out_features(self) -> int:
        return self.hidden[-1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        outs = []
        for stack in self.experts:
            z = x
            for rnn in cast(nn.ModuleList, stack):
                z, _ = rnn(z)
            outs.append(z if self.return_sequences else z[:, -1])
        return torch.stack(outs, dim=-2)


ExpertBank = MLPExperts | KANExperts | RecurrentExperts


def build_experts(
    kind: str,
    in_features: int,
    n_experts: int,
    hidden: tuple[int, ...],
    *,
    return_sequences: bool = False,
    **kan_options: Unpack[KanOptions],
) -> ExpertBank:
    if kind == "mlp":
        return MLPExperts(in_features, n_experts, hidden)
    if kind == "kan":
        return KANExperts(in_features, n_experts, hidden, **kan_options)
    if kind in ("lstm", "gru"):
        return RecurrentExperts(in_features, n_experts, hidden, kind, return_sequences)
    raise ValueError(f"expert type must be one of mlp, kan, lstm, gru, got {kind!r}")
