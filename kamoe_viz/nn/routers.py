"""Routers: how a gate's logits (..., E) become the weights the experts are mixed with.

Routing is its own axis, orthogonal to the gate family (linear, GRN, GRKAN produce logits; a router turns them into
weights). :data:`ROUTERS` is the one list every page, the CLI and Compare read: name, title, paper, a one-line
definition and the config fields each router uses. Sequence logits (B, T, E) are routed per time step: the
routers that look at a whole batch (switch's capacity, expert choice) treat every (row, step) as one token.

Every router returns a :class:`RouterOutput` (weights, logits, aux); ``aux`` may hold ``dropped_fraction``
(switch, expert choice) and ``coverage`` (expert choice). The balance and z losses are computed from the output by
:func:`balance_loss` and :func:`z_loss`, for every router alike.

Only ``expert_choice`` makes a row's weights depend on the other rows of its batch at inference; switch drops
overflowing rows in training only, so a trained model's predictions never depend on batch composition otherwise.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from kamoe_viz.config import GATE_ACTIVATIONS, ROUTINGS
from kamoe_viz.errors import ValidationError
from kamoe_viz.routing_specs import ROUTERS, SHARED_EXPERTS_DEFINITION, RouterSpec


class RouterOutput(NamedTuple):
    weights: torch.Tensor  # (..., E)
    logits: torch.Tensor  # (..., E), what the router was given
    aux: dict[str, torch.Tensor]
    # (..., E) the full distribution over experts the weights are selected from, before any top-k, capacity or
    # bias selection, summing to 1 per row: what the mixture likelihood scores (None: the weights, normalised)
    probs: torch.Tensor | None = None


def _normalised(scores: torch.Tensor) -> torch.Tensor:
    """Non-negative scores (sigmoid, ReLU) as a distribution over experts; an all-zero row stays zero."""
    return scores / scores.sum(-1, keepdim=True).clamp_min(1e-12)


class Router(nn.Module):
    """Base class: ``forward(logits) -> RouterOutput``; ``after_step()`` runs after each optimiser step."""

    name = "base"
    updates_after_step = False

    def __init__(self, n_experts: int) -> None:
        super().__init__()
        self.n_experts = n_experts

    def after_step(self) -> None:
        """Called by the trainer after each optimiser step that was taken."""


def keep_mask(scores: torch.Tensor, k: int) -> torch.Tensor:
    """Exactly k True per row at the k largest scores (ties broken by index, not by keeping every tied one)."""
    kept = scores.topk(k, dim=-1).indices
    return torch.zeros_like(scores, dtype=torch.bool).scatter_(-1, kept, True)


def topk_softmax(logits: torch.Tensor, keep: torch.Tensor, k: int) -> torch.Tensor:
    """Softmax over the kept logits (renormalised); for k = 1 the full softmax probability of the kept expert, since
    the renormalised weight would be exactly 1 and the gate would get no gradient from the loss."""
    if k == 1:
        return torch.softmax(logits, dim=-1) * keep
    return torch.softmax(logits.masked_fill(~keep, float("-inf")), dim=-1)


class DenseRouter(Router):
    name = "dense"

    def __init__(self, n_experts: int, gate_activation: str = "sigmoid") -> None:
        super().__init__(n_experts)
        if gate_activation not in GATE_ACTIVATIONS:
            raise ValidationError(
                "model.gate_activation", gate_activation, f"must be one of {', '.join(GATE_ACTIVATIONS)}"
            )
        self.activation = gate_activation

    def forward(self, logits: torch.Tensor) -> RouterOutput:
        weights = torch.sigmoid(logits) if self.activation == "sigmoid" else torch.softmax(logits, dim=-1)
        return RouterOutput(weights, logits, {}, _normalised(weights) if self.activation == "sigmoid" else weights)


class TopKRouter(Router):
    name = "topk"

    def __init__(self, n_experts: int, top_k: int = 1, gate_activation: str = "softmax") -> None:
        super().__init__(n_experts)
        if not 1 <= top_k <= n_experts:
            raise ValidationError("model.top_k", top_k, f"must be from 1 to the number of experts ({n_experts})")
        if gate_activation not in GATE_ACTIVATIONS:
            raise ValidationError(
                "model.gate_activation", gate_activation, f"must be one of {', '.join(GATE_ACTIVATIONS)}"
            )
        self.top_k, self.activation = top_k, gate_activation

    def forward(self, logits: torch.Tensor) -> RouterOutput:
        keep = keep_mask(logits, self.top_k)
        if self.activation == "sigmoid":
            affinity = torch.sigmoid(logits)
            return RouterOutput(affinity * keep, logits, {}, _normalised(affinity))
        return RouterOutput(topk_softmax(logits, keep, self.top_k), logits, {}, torch.softmax(logits, dim=-1))


class NoisyTopKRouter(Router):
    """Shazeer et al.: H = logits + N(0, 1) * softplus(W_noise logits + b); W_noise starts at zero (their init)."""

    name = "noisy_topk"

    def __init__(self, n_experts: int, top_k: int = 1) -> None:
        super().__init__(n_experts)
        if not 1 <= top_k <= n_experts:
            raise ValidationError("model.top_k", top_k, f"must be from 1 to the number of experts ({n_experts})")
        self.top_k = top_k
        self.noise = nn.Linear(n_experts, n_experts)
        nn.init.zeros_(self.noise.weight)
        nn.init.zeros_(self.noise.bias)

    def noisy_scores(self, logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(scores, pre-softplus noise scale W_noise logits + b, the N(0, 1) draw) in training: the one definition
        of the noise, which the closed-form step (:func:`kamoe_viz.nn.fast.closed_form.noisy_topk_forward`) reuses."""
        pre = self.noise(logits)
        noise = torch.randn_like(logits)
        return logits + noise * F.softplus(pre), pre, noise

    def forward(self, logits: torch.Tensor) -> RouterOutput:
        scores = self.noisy_scores(logits)[0] if self.training else logits
        keep = keep_mask(scores, self.top_k)
        return RouterOutput(topk_softmax(scores, keep, self.top_k), logits, {}, torch.softmax(scores, dim=-1))


def capacity(capacity_factor: float, tokens: int, n_experts: int) -> int:
    """ceil(capacity_factor * tokens / E), at least 1 and at most ``tokens``."""
    return max(1, min(tokens, math.ceil(capacity_factor * tokens / n_experts)))


class SwitchRouter(Router):
    name = "switch"

    def __init__(self, n_experts: int, capacity_factor: float = 1.25) -> None:
        super().__init__(n_experts)
        self.capacity_factor = float(capacity_factor)

    def forward(self, logits: torch.Tensor) -> RouterOutput:
        probs = torch.softmax(logits, dim=-1)
        keep = keep_mask(probs, 1)
        aux: dict[str, torch.Tensor] = {}
        if self.training:  # capacity in training only: inference must not depend on the batch
            flat = keep.reshape(-1, self.n_experts)
            limit = capacity(self.capacity_factor, flat.shape[0], self.n_experts)
            position = flat.long().cumsum(0)  # 1-based arrival order of each row at its expert, in batch order
            fits = flat & (position <= limit)
            aux["dropped_fraction"] = 1.0 - fits.any(-1).float().mean()
            keep = fits.view_as(keep)
        return RouterOutput(probs * keep, logits, aux, probs)


class ExpertChoiceRouter(Router):
    name = "expert_choice"

    def __init__(self, n_experts: int, capacity_factor: float = 1.25) -> None:
        super().__init__(n_experts)
        self.capacity_factor = float(capacity_factor)

    def forward(self, logits: torch.Tensor) -> RouterOutput:
        probs = torch.softmax(logits, dim=-1)
        flat = probs.reshape(-1, self.n_experts)
        tokens = flat.shape[0]
        if tokens == 0:
            return RouterOutput(probs, logits, {}, probs)
        limit = capacity(self.capacity_factor, tokens, self.n_experts)
        chosen = flat.topk(limit, dim=0).indices  # (C, E): each expert's top-C rows
        keep = torch.zeros_like(flat, dtype=torch.bool).scatter_(0, chosen, True)
        covered = keep.any(-1).float().mean()
        weights = (flat * keep).view_as(probs)
        return RouterOutput(weights, logits, {"coverage": covered, "dropped_fraction": 1.0 - covered}, probs)


class SigmoidBiasRouter(Router):
    """DeepSeek-V3's auxiliary-loss-free balancing: a bias per expert, used for selection only, nudged after each
    optimiser step towards the mean load. The bias is a buffer (saved with the model, never trained by gradient)."""

    name = "sigmoid_bias"
    updates_after_step = True

    def __init__(self, n_experts: int, top_k: int = 1, bias_update_rate: float = 0.001) -> None:
        super().__init__(n_experts)
        if not 1 <= top_k <= n_experts:
            raise ValidationError("model.top_k", top_k, f"must be from 1 to the number of experts ({n_experts})")
        self.top_k = top_k
        self.bias_update_rate = float(bias_update_rate)
        self.bias: torch.Tensor
        self.last_load: torch.Tensor
        self.register_buffer("bias", torch.zeros(n_experts))
        self.register_buffer("last_load", torch.zeros(n_experts), persistent=False)

    def forward(self, logits: torch.Tensor) -> RouterOutput:
        affinity = torch.sigmoid(logits)
        keep = keep_mask(affinity + self.bias, self.top_k)
        selected = affinity * keep
        if self.top_k > 1:
            selected = selected / selected.sum(-1, keepdim=True).clamp_min(1e-12)
        if self.training:
            self.last_load.copy_(keep.reshape(-1, self.n_experts).sum(0))
        return RouterOutput(selected, logits, {}, _normalised(affinity))

    @torch.no_grad()
    def after_step(self) -> None:
        load = self.last_load
        self.bias.add_(torch.sign(load.mean() - load), alpha=self.bias_update_rate)
        load.zero_()


class ReLURouter(Router):
    name = "relu"

    def forward(self, logits: torch.Tensor) -> RouterOutput:
        weights = torch.relu(logits)
        return RouterOutput(weights, logits, {}, _normalised(weights))


ROUTER_CLASSES: dict[str, type[Router]] = {
    "dense": DenseRouter,
    "topk": TopKRouter,
    "noisy_topk": NoisyTopKRouter,
    "switch": SwitchRouter,
    "expert_choice": ExpertChoiceRouter,
    "sigmoid_bias": SigmoidBiasRouter,
    "relu": ReLURouter,
}
assert tuple(ROUTER_CLASSES) == ROUTINGS


def build_router(name: str, n_experts: int, **options: object) -> Router:
    """The router ``name`` for E experts; options are the config fields its spec lists, anything else is refused."""
    spec = ROUTERS.get(name)
    if spec is None:
        raise ValidationError("model.routing", name, f"must be one of {', '.join(ROUTERS)}")
    unknown = sorted(set(options) - set(spec.options))
    if unknown:
        allowed = ", ".join(spec.options) or "none"
        raise ValidationError(
            f"router option {unknown[0]}",
            options[unknown[0]],
            f"is not an option of the {name} router (its options: {allowed})",
        )
    return ROUTER_CLASSES[name](n_experts, **options)


def router_options(config) -> dict[str, object]:
    """The options of ``config.routing``'s router, read from a ModelConfig."""
    return {name: getattr(config, name) for name in ROUTERS[config.routing].options}


# ----- losses on a router's output ------------------------------------------------------------------------------------
def balance_loss(out: RouterOutput) -> torch.Tensor:
    """Switch auxiliary loss E * sum_i f_i * P_i: f_i the share of rows whose largest weight is expert i (rows no
    expert took are left out), P_i the mean softmax probability of i; 1 when balanced, E when collapsed."""
    logits = out.logits.reshape(-1, out.logits.shape[-1])
    weights = out.weights.reshape(-1, logits.shape[-1])
    n_experts = logits.shape[-1]
    if logits.shape[0] == 0:
        return logits.new_zeros(())
    probs = torch.softmax(logits, dim=-1)
    routed = (weights > 0).any(-1, keepdim=True)
    top1 = F.one_hot(weights.argmax(-1), n_experts).to(probs.dtype) * routed
    f = top1.sum(0) / routed.sum().clamp_min(1)
    return n_experts * torch.dot(f, probs.mean(0))


def z_loss(out: RouterOutput) -> torch.Tensor:
    """Router z-loss (ST-MoE, Zoph et al. 2022): mean over rows of logsumexp(logits)^2."""
    logits = out.logits.reshape(-1, out.logits.shape[-1])
    if logits.shape[0] == 0:
        return logits.new_zeros(())
    return torch.logsumexp(logits, dim=-1).square().mean()


__all__ = [
    "ROUTERS",
    "ROUTER_CLASSES",
    "SHARED_EXPERTS_DEFINITION",
    "Router",
    "RouterOutput",
    "RouterSpec",
    "balance_loss",
    "build_router",
    "capacity",
    "router_options",
    "z_loss",
]
