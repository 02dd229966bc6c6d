"""One training step, and the one place that chooses how it is computed.

:class:`Stepper` owns the optimiser and the gradient buffers of a run and decides, once per run (again when a
loss weight changes between epochs), which of the speed-ups of :mod:`kamoe_viz.nn.fast` the step uses:

- gradients: closed form (:mod:`kamoe_viz.nn.fast.direct_grad`; CPU, the models and objectives it covers) or
  autograd; ``gradient_path`` and ``gradient_path_reason`` say which and why;
- KAN layers: the C kernel (:mod:`kamoe_viz.nn.fast.native`) when it is built, fixed for the whole run;
- the optimiser: ``FastAdam`` (torch's fused Adam kernel, bit for bit) or ``torch.optim.Adam``;
- on CUDA, the whole step replayed as a CUDA graph (opt-in, ``KAMOE_CUDA_GRAPHS=1``).

With the fast paths off (``KAMOE_FAST=0``, ``train --no-fast``, or :func:`kamoe_viz.nn.fast.plain_autograd`) every
step is plain PyTorch: modules, autograd and ``torch.optim.Adam``. tests/test_training_step.py checks that both
train alike.
"""

from __future__ import annotations

import ctypes
import math
from typing import TYPE_CHECKING

import torch

from kamoe_viz.config import TrainConfig
from kamoe_viz.nn import fast
from kamoe_viz.nn.fast import native
from kamoe_viz.nn.fast.cuda_graph import GraphedStep, graphs_enabled
from kamoe_viz.nn.fast.direct_grad import DirectGradients, unsupported_reason
from kamoe_viz.training.objectives import AUX_LOSSES, GroupedAdam, Objective, build_optimizer

if TYPE_CHECKING:
    from kamoe_viz.nn.fast.optim import FastAdam
    from kamoe_viz.nn.moe import KAMoE

GRAD_NORM_LIMIT = 1e6  # a gradient norm above this (with clipping off) counts as exploding


def grad_norm(params: list[torch.nn.Parameter]) -> torch.Tensor:
    """Global L2 norm of the gradients, as a tensor (no host sync)."""
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return torch.zeros(())
    return torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads)))


def flat_gradients(params: list[torch.nn.Parameter]) -> torch.Tensor | None:
    """One zeroed buffer holding every parameter's gradient, with each ``p.grad`` a view into it; backward then
    accumulates into the views in place. Zeroing, the norm and the finiteness check become one op each instead of
    one per parameter (a small model's step is dominated by per-op overhead). None if the parameters differ in
    dtype or device."""
    if not params or any(p.dtype != params[0].dtype or p.device != params[0].device for p in params):
        return None
    flat = torch.zeros(sum(p.numel() for p in params), dtype=params[0].dtype, device=params[0].device)
    offset = 0
    for p in params:
        p.grad = flat[offset : offset + p.numel()].view_as(p)
        offset += p.numel()
    return flat


def plain_optimizer(model: torch.nn.Module, extra: list[torch.nn.Parameter], config: TrainConfig) -> torch.optim.Adam:
    """``torch.optim.Adam`` with the parameter groups of :func:`~kamoe_viz.training.objectives.build_optimizer`
    (the routing parameters at lr * gate_lr_scale)."""
    params = [p for p in model.parameters() if p.requires_grad] + list(extra)
    routing_of = getattr(model, "routing_parameters", None)
    routing = routing_of() if routing_of is not None and config.gate_lr_scale != 1.0 else []
    ids = {id(p) for p in routing}
    groups = [{"params": [p for p in params if id(p) not in ids], "lr": config.lr}]
    if routing:
        groups.append({"params": routing, "lr": config.lr * config.gate_lr_scale})
    return torch.optim.Adam(groups, lr=config.lr, weight_decay=config.weight_decay)


class Stepper:
    """Loss, gradients and update of one batch for ``model`` under ``objective``; ``__call__(xb, yb)`` returns
    (task loss, gradient norm, ok) as tensors. When ok is False (a non-finite loss or gradient, or an exploding
    norm with clipping off) the update was not taken and the weights are unchanged."""

    def __init__(
        self, model: KAMoE, objective: Objective, config: TrainConfig, task: str, device: torch.device
    ) -> None:
        self.model, self.objective, self.config, self.task, self.device = model, objective, config, task, device
        self.fast = fast.enabled()
        # KAN layers' path for the whole run (the C kernel if built now), so a build finishing mid-run never
        # changes the run's arithmetic
        self.kernel: ctypes.CDLL | None = native.library() if self.fast else None
        extra = list(objective.parameters())
        self.optimizer: FastAdam | GroupedAdam | torch.optim.Adam = (
            build_optimizer(model, extra, config) if self.fast else plain_optimizer(model, extra, config)
        )
        self.params = [p for group in self.optimizer.param_groups for p in group["params"]]
        # CPU only: CUDA steps may be captured in graphs, which keep their own gradient buffers
        self._flat_grad = flat_gradients(self.params) if self.fast and device.type == "cpu" else None
        router = getattr(model, "router", None)
        self._router_update = (
            getattr(router, "after_step", None) if getattr(router, "updates_after_step", False) else None
        )
        self._graphed: GraphedStep | None = None
        self.use_graphs = self.fast and graphs_enabled(device) and bool(getattr(self.optimizer, "fused", False))
        self.graph_error: str | None = None  # why CUDA graphs were turned off for this run, if they were
        self.choose(config)

    def choose(self, config: TrainConfig) -> None:
        """The choice of gradient path for ``config``: closed form where it covers the run, else autograd."""
        self.config = config
        if not self.fast:
            reason: str | None = f"{fast.FAST_ENV}=0 (fast paths off)"
        elif self._flat_grad is None:
            reason = f"{self.device.type} device"
        else:
            reason = unsupported_reason(self.model, self.task, self.kernel)
        self.gradient_path_reason = reason
        aux = {name: float(getattr(config, name)) for name in AUX_LOSSES}
        likelihood = config.objective == "likelihood"
        self.direct = (
            None
            if reason is not None
            else DirectGradients(
                self.model, self.task, self.kernel, aux, likelihood=likelihood, log_sigma=self.objective.log_sigma
            )
        )
        self.gradient_path = "direct" if self.direct is not None else "autograd"
        self._graphed = None  # a captured step holds the old loss weights

    @property
    def lr(self) -> float:
        return float(self.optimizer.param_groups[0]["lr"])

    def scale_lr(self, ratio: float) -> None:
        """Every parameter group's learning rate times ``ratio`` (the gate's group keeps its scale)."""
        for group in self.optimizer.param_groups:
            group["lr"] = group["lr"] * ratio

    def __call__(self, xb: torch.Tensor, yb: torch.Tensor) -> tuple[torch.Tensor, ...]:
        graphed = self._graphed_step(xb, yb) if self.use_graphs else None
        if graphed is not None:  # updates the weights itself, skipping the update on the device when not ok
            return graphed(xb, yb)
        loss, norm, ok = self.backward(xb, yb)
        if not bool(ok):  # one host sync per batch; no step taken: the weights stay finite
            return loss, norm, ok
        if self.config.max_grad_norm > 0:
            torch.nn.utils.clip_grads_with_norm_(self.params, self.config.max_grad_norm, norm)
        self.optimizer.step()
        if self._router_update is not None:  # e.g. sigmoid_bias: bias towards the mean load
            self._router_update()
        return loss, norm, ok

    def backward(self, xb: torch.Tensor, yb: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Loss and gradients of one batch; returns (loss, gradient norm, ok) as tensors, without a host sync.
        ok is False for a non-finite loss or gradient (NaN compares False) or, with clipping off, an exploding
        norm: then the step must not be taken."""
        loss = self.direct.step(xb, yb) if self.direct is not None else None  # writes every p.grad
        if loss is None:
            if self._flat_grad is not None:
                self._flat_grad.zero_()
            else:
                self.optimizer.zero_grad(set_to_none=True)
            total, loss = self.objective(self.model(xb), yb)  # loss: the task part, what train_loss reports
            total.backward()
        else:
            total = loss
        norm = grad_norm(self.params) if self._flat_grad is None else torch.linalg.vector_norm(self._flat_grad)
        limit = GRAD_NORM_LIMIT if self.config.max_grad_norm <= 0 else math.inf  # clipping on: only NaN/inf stop
        return loss.detach(), norm, torch.isfinite(total) & (norm < limit)

    def device_step(self, xb: torch.Tensor, yb: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """One training step with no host sync (what a CUDA graph captures): the update is skipped on the device
        when the loss or gradient norm is not finite, or the norm explodes (clipping off); returns (loss, norm, ok)."""
        clip = self.config.max_grad_norm
        loss, norm, ok = self.backward(xb, yb)
        if clip > 0:
            torch.nn.utils.clip_grads_with_norm_(self.params, clip, norm)
        self.optimizer.step(skip=ok.logical_not().float())  # type: ignore[call-arg]  # FastAdam only (use_graphs)
        if self._router_update is not None:
            self._router_update()
        return loss, norm, ok

    def _graphed_step(self, xb: torch.Tensor, yb: torch.Tensor) -> GraphedStep | None:
        """The captured step for full batches at the current learning rate (captured on first use); None for a
        short last batch, or once capturing failed (then every step runs eagerly, as on the CPU)."""
        tag = self.lr
        if self._graphed is not None and self._graphed.matches(xb, tag):
            return self._graphed
        if xb.shape[0] != self.config.batch_size:
            return None
        self._graphed = None  # free the old graph's memory before capturing the new one
        # what a step changes in place; not the buffers (KAN grids): touching those would drop the layers' caches
        state = [*self.model.parameters(), *self.optimizer.state_tensors()]  # type: ignore[union-attr]
        try:
            self._graphed = GraphedStep(self.device_step, xb, yb, state, tag)
        except Exception as exc:  # an op that cannot be captured: train eagerly instead, nothing is lost
            self.use_graphs = False
            self.graph_error = f"{type(exc).__name__}: {exc}"
            torch.cuda.synchronize(self.device)
        return self._graphed


__all__ = ["GRAD_NORM_LIMIT", "Stepper", "flat_gradients", "grad_norm", "plain_optimizer"]
