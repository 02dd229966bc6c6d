"""What training minimises: the task loss or the mixture likelihood, plus the routers' balance and z losses; and
Adam with the gate's own learning rate.

- ``mse`` (default): the task loss of the mixed prediction (MSE on scaled targets, cross-entropy on class logits).
- ``likelihood``: the mixture-of-experts likelihood of Jacobs et al. (1991), which rewards sending a row to the
  expert that predicts it best rather than blending experts: regression -log sum_e p_e N(y; y_e, sigma^2) with a
  learned log sigma; classification -log sum_e p_e softmax(logits_e)[y]. The mixture weights p are the gate's
  **full probabilities before any selection** (``RouterOutput.probs``: the softmax over all experts; sigmoid or
  ReLU scores divided by their sum), not the routed weights: after top-1 selection the routed weights,
  normalised, are exactly 1 and the gate would get no gradient from the likelihood. Every row is scored, also
  rows that capacity dropped or that no expert chose (all experts are evaluated on every row).
  With this objective the model mixes the **routed weights normalised to sum 1** (:func:`prepare_model` sets
  ``KAMoE.normalise_weights``), so the prediction is the mean of the routed part of that mixture: each
  ``expert_outputs`` column is a component's mean, and under top-1 routing the prediction is the chosen expert's
  own output (with the MSE objective, Switch's p * E(x) stays as published). The two agree exactly for dense
  routers and for every router on rows whose gate puts all its probability on the routed experts.
- ``train.balance_loss`` * the Switch auxiliary loss and ``train.z_loss`` * the router z-loss are added to either
  (:func:`kamoe_viz.nn.routers.balance_loss`, :func:`~kamoe_viz.nn.routers.z_loss`).
"""

from __future__ import annotations

import math
from typing import Any, TypeVar

import torch
from torch import nn

from kamoe_viz.config import TrainConfig
from kamoe_viz.nn.fast.optim import FastAdam
from kamoe_viz.nn.moe import KAMoE
from kamoe_viz.training.evaluation import task_loss

AUX_LOSSES = ("balance_loss", "z_loss")  # MoEOutput.aux keys the trainer weights by the TrainConfig field of that name
_HALF_LOG_2PI = 0.5 * math.log(2 * math.pi)


def mixture_nll(
    task: str,
    weights: torch.Tensor,
    expert_outputs: torch.Tensor,
    target: torch.Tensor,
    log_sigma: torch.Tensor | None = None,
) -> torch.Tensor:
    """Mean negative log-likelihood of the mixture over the rows (and time steps) that some expert took.

    weights (..., E); expert_outputs (..., O, E); target (..., O) for regression, (...) class labels otherwise."""
    if task == "classification":
        log_p = torch.log_softmax(expert_outputs, dim=-2)
        index = target.long().unsqueeze(-1).unsqueeze(-1).expand(*target.shape, 1, expert_outputs.shape[-1])
        log_p = log_p.gather(-2, index).squeeze(-2)  # (..., E)
    else:
        sigma_log = log_sigma if log_sigma is not None else expert_outputs.new_zeros(())
        z = (target.unsqueeze(-1) - expert_outputs) * torch.exp(-sigma_log)
        log_p = (-0.5 * z.square() - sigma_log - _HALF_LOG_2PI).sum(-2)  # (..., E)
    total = weights.sum(-1, keepdim=True)
    routed = total.squeeze(-1) > 0
    share = weights / total.clamp_min(1e-12)
    log_share = torch.where(share > 0, torch.log(share.clamp_min(1e-30)), torch.full_like(share, -math.inf))
    nll = -torch.logsumexp(log_share + log_p, dim=-1)
    nll = torch.where(routed, nll, torch.zeros_like(nll))
    return nll.sum() / routed.sum().clamp_min(1)


class Objective(nn.Module):
    """The training loss of one run; holds the likelihood's learned log sigma (regression only)."""

    def __init__(self, config: TrainConfig, task: str) -> None:
        super().__init__()
        self.kind, self.task = config.objective, task
        self.set_weights(config)
        self.log_sigma = (
            nn.Parameter(torch.zeros(())) if (self.kind == "likelihood" and task != "classification") else None
        )

    def set_weights(self, config: TrainConfig) -> None:
        """The auxiliary losses' weights (those above 0) from ``config``; may change between epochs."""
        self.weights = {name: float(getattr(config, name)) for name in AUX_LOSSES if getattr(config, name) > 0}

    def task_part(self, out: Any, target: torch.Tensor) -> torch.Tensor:
        """The objective without the auxiliary losses: what ``train_loss`` and ``val_loss`` report."""
        if self.kind == "likelihood" and out.gate_weights.shape[-1] > 1:
            probs = getattr(out, "gate_probs", None)
            return mixture_nll(
                self.task, out.gate_weights if probs is None else probs, out.expert_outputs, target, self.log_sigma
            )
        return task_loss(self.task, out.prediction, target)

    def forward(self, out: Any, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(loss to differentiate, its task part)."""
        part = self.task_part(out, target)
        total = part
        aux = getattr(out, "aux", None) or {}
        for name, weight in self.weights.items():
            if name in aux:
                total = total + weight * aux[name]
        return total, part


def mixes_normalised(config: TrainConfig) -> bool:
    """Whether a model trained (or loaded) with ``config`` mixes its routed weights normalised to sum 1."""
    return config.objective == "likelihood"


ModuleT = TypeVar("ModuleT", bound=nn.Module)


def prepare_model(model: ModuleT, config: TrainConfig) -> ModuleT:
    """Set what the objective fixes about the model's forward pass (``KAMoE.normalise_weights``); called by the
    trainer and when a saved run is loaded, so a run predicts as it was trained."""
    if isinstance(model, KAMoE):
        model.normalise_weights = mixes_normalised(config)
    return model


class OutputFields:
    """Batched outputs (a dict of fields) read by attribute, as the objective reads a MoEOutput."""

    def __init__(self, fields: dict[str, Any]) -> None:
        self.__dict__.update(fields)


class GroupedAdam:
    """FastAdam per parameter group (the rest, and the routing parameters at lr * scale) behind FastAdam's interface;
    ``param_groups[0]`` is the main group, whose lr the trainer reports and schedules."""

    def __init__(self, groups: list[tuple[list[nn.Parameter], float]], weight_decay: float) -> None:
        self.parts = [FastAdam(params, lr=lr, weight_decay=weight_decay) for params, lr in groups if params]
        self.param_groups = [part.param_groups[0] for part in self.parts]
        self.fused = all(part.fused for part in self.parts)

    def zero_grad(self, set_to_none: bool = True) -> None:
        for part in self.parts:
            part.zero_grad(set_to_none)

    def state_tensors(self) -> list[torch.Tensor]:
        return [t for part in self.parts for t in part.state_tensors()]

    def step(self, closure=None, skip: torch.Tensor | None = None) -> None:
        for part in self.parts:
            part.step(skip=skip)


def build_optimizer(model: nn.Module, extra: list[nn.Parameter], config: TrainConfig) -> FastAdam | GroupedAdam:
    """Adam over the model's trainable parameters and ``extra`` (the objective's); with ``gate_lr_scale`` != 1 the
    gate, its input layer and the router get lr * gate_lr_scale."""
    params = [p for p in model.parameters() if p.requires_grad] + list(extra)
    routing = model.routing_parameters() if isinstance(model, KAMoE) else []
    if config.gate_lr_scale == 1.0 or not routing:
        return FastAdam(params, lr=config.lr, weight_decay=config.weight_decay)
    ids = {id(p) for p in routing}
    rest = [p for p in params if id(p) not in ids]
    return GroupedAdam([(rest, config.lr), (routing, config.lr * config.gate_lr_scale)], config.weight_decay)


__all__ = [
    "AUX_LOSSES",
    "GroupedAdam",
    "Objective",
    "OutputFields",
    "build_optimizer",
    "mixes_normalised",
    "mixture_nll",
    "prepare_model",
]
