"""The training loop: Adam, early stopping with best-weights restore, plateau LR reduction, divergence guard.

Data stay as tensors on the device; each epoch draws one permutation from a generator seeded by ``train.seed``,
gathers the split once in that order and slices contiguous batches (no DataLoader, no per-sample Python).
:class:`Trainer` runs a few epochs at a time so the app can train in short bursts between reruns while the optimiser
state lives on; :func:`fit` is the plain loop over it.
"""
from __future__ import annotations

import dataclasses
import math
import time
from typing import TYPE_CHECKING, Any, Callable

import numpy as np
import pandas as pd
import torch

from kamoe_viz.config import TrainConfig
from kamoe_viz.errors import ValidationError
from kamoe_viz.nn import native
from kamoe_viz.nn.direct_grad import DirectGradients, unsupported_reason
from kamoe_viz.training.cuda_graph import GraphedStep, graphs_enabled
from kamoe_viz.training.devices import resolve_device
from kamoe_viz.training.evaluation import EVAL_BATCH, batched_outputs, check_input, evaluate, input_tensor, target_tensor
from kamoe_viz.training.objectives import AUX_LOSSES, Objective, OutputFields, build_optimizer, prepare_model
from kamoe_viz.training.restarts import choose_initialisation
from kamoe_viz.training.results import HISTORY_COLUMNS, EpochInfo, TrainResult

if TYPE_CHECKING:
    from kamoe_viz.data.base import Dataset
    from kamoe_viz.nn.moe import KAMoE

GATE_SUBSET_ROWS = 512  # validation rows whose gate weights every EpochInfo carries
GRAD_NORM_LIMIT = 1e6  # a gradient norm above this (with clipping off) counts as exploding
PLATEAU_MIN_DELTA = 1e-4  # as Keras' ReduceLROnPlateau: a smaller improvement does not reset its patience

EpochCallback = Callable[[EpochInfo], Any]


def _grad_norm(params: list[torch.nn.Parameter]) -> torch.Tensor:
    """Global L2 norm of the gradients, as a tensor (no host sync)."""
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return torch.zeros(())
    return torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads)))


def _flat_gradients(params: list[torch.nn.Parameter]) -> torch.Tensor | None:
    """One zeroed buffer holding every parameter's gradient, with each ``p.grad`` a view into it; backward then
    accumulates into the views in place. Zeroing, the norm and the finiteness check become one op each instead of
    one per parameter (a small model's step is dominated by per-op overhead). None if the parameters differ in
    dtype or device."""
    if not params or any(p.dtype != params[0].dtype or p.device != params[0].device for p in params):
        return None
    flat = torch.zeros(sum(p.numel() for p in params), dtype=params[0].dtype, device=params[0].device)
    offset = 0
    for p in params:
        p.grad = flat[offset:offset + p.numel()].view_as(p)
        offset += p.numel()
    return flat


def divergence_message(epoch: int, loss: float, norm: float | None, what: str | None, best_epoch: int | None,
                       best_val: float, lr: float, clip: float) -> str:
    """What went wrong in a diverged run, which weights were kept, and what to change."""
    if what is None:
        if not math.isfinite(loss):
            what = f"training loss became {loss}"
        elif norm is not None and not math.isfinite(norm):
            what = f"gradient norm became {norm}"
        else:
            what = f"gradient norm exploded to {norm:.3g} (limit {GRAD_NORM_LIMIT:g})"
    else:
        what = f"{what} became {loss}"
    kept = (f"the weights of epoch {best_epoch} (validation loss {best_val:.4g})"
            if best_epoch is not None else "the initial weights (no epoch had finished)")
    clipping = ("enable gradient clipping (train.max_grad_norm, e.g. 1.0)" if clip <= 0 else
                f"clip gradients harder (train.max_grad_norm, currently {clip:g})")
    return (f"Training diverged in epoch {epoch}: the {what}. Kept {kept}. Lower the learning rate "
            f"(currently {lr:g}), scale the inputs, or {clipping}.")


class Trainer:
    """Trains ``model`` on ``dataset`` with ``train_config``, a burst of epochs at a time.

    ``run_epochs(n)`` trains up to n more epochs and returns their :class:`EpochInfo`; ``on_epoch`` is called after
    each and may return False to stop. ``stop()`` ends training after the current epoch; ``done`` says whether
    training has ended (completed, early stopping, divergence or stop); ``finish()`` restores the best weights,
    scores them on the validation and test splits and returns the :class:`TrainResult`.
    """

    def __init__(self, model: KAMoE, dataset: Dataset, train_config: TrainConfig,
                 on_epoch: EpochCallback | None = None) -> None:
        self.config = dataclasses.replace(train_config).validate()
        self.device = resolve_device(self.config.device)
        self.dataset = dataset
        self.task = dataset.task
        self.on_epoch = on_epoch
        if len(dataset.X_train) == 0:
            raise ValidationError("dataset", dataset.name, "has no training rows; it needs at least one")
        check_input(model, dataset.X_train, "dataset.X_train")
        self.model = prepare_model(model, self.config).to(self.device)
        # KAN layers' path for the whole run (the C kernel if built now), so a build finishing mid-run never
        # changes the run's arithmetic
        self._kernel = native.library()
        self.native_kernel = self._kernel is not None
        self._X = input_tensor(dataset.X_train, self.device)
        self._y = target_tensor(self.task, dataset.y_train, self.device)
        if len(dataset.X_val):
            self._Xv = input_tensor(dataset.X_val, self.device)
            self._yv = target_tensor(self.task, dataset.y_val, self.device)
        else:  # no validation split: monitor the training data instead
            self._Xv, self._yv = self._X, self._y
        self._check_output_shape()
        # train.restarts > 1: the initialisation that looks best after a few epochs (kamoe_viz.training.restarts)
        self.restart_losses, self.restart_chosen, restart_seconds = choose_initialisation(self.model, dataset,
                                                                                          self.config)
        self.objective = Objective(self.config, self.task).to(self.device)
        # Adam as kamoe_viz.nn.optim.FastAdam: torch's fused update, bit for bit, little Python per step
        self.optimizer = build_optimizer(self.model, list(self.objective.parameters()), self.config)
        self._params = [p for group in self.optimizer.param_groups for p in group["params"]]
        # CPU only: CUDA steps may be captured in graphs, which keep their own gradient buffers
        self._flat_grad = _flat_gradients(self._params) if self.device.type == "cpu" else None
        self._choose_gradient_path()
        router = getattr(self.model, "router", None)
        self._router_update = getattr(router, "after_step", None) if getattr(router, "updates_after_step", False) \
            else None
        self._generator = torch.Generator().manual_seed(self.config.seed)
        self._graphed: GraphedStep | None = None
        self.use_graphs = graphs_enabled(self.device) and self.optimizer.fused
        self.graph_error: str | None = None  # why CUDA graphs were turned off for this run, if they were
        self.epoch = 0
        self.rows: list[dict[str, float]] = []
        self.best_epoch: int | None = None
        self.best_val = math.inf
        self._best_state = self._snapshot()  # the initial weights until an epoch improves on them
        self._stop_wait = 0
        self._plateau_best = math.inf
        self._plateau_wait = 0
        self._stop_requested = False
        self.stopped_reason: str | None = None
        self.message: str | None = None
        self.seconds = restart_seconds  # the restarts' search counts as the run's time
        self._result: TrainResult | None = None

    def _choose_gradient_path(self) -> None:
        """The one choice of gradient path: the closed-form gradients (:mod:`kamoe_viz.nn.direct_grad`, CPU; fewer
        ops than autograd, same values) where they cover the run, else plain autograd; ``gradient_path_reason``
        says why. Made again when a setting it depends on changes between epochs."""
        cfg, reason = self.config, None
        if self._flat_grad is None:
            reason = f"{self.device.type} device"
        elif cfg.objective != "mse":
            reason = f"objective {cfg.objective}"
        else:
            reason = unsupported_reason(self.model, self.task, self._kernel)
        self.gradient_path_reason = reason
        self._direct = None if reason is not None else DirectGradients(
            self.model, self.task, self._kernel, {name: getattr(cfg, name) for name in AUX_LOSSES})
        self.gradient_path = "direct" if self._direct is not None else "autograd"

    # ----- state ----------------------------------------------------------------------------------------------------
    @property
    def done(self) -> bool:
        return self.stopped_reason is not None or self._stop_requested

    @property
    def lr(self) -> float:
        return float(self.optimizer.param_groups[0]["lr"])

    def stop(self) -> None:
        """Finish after the current epoch (or now, between bursts)."""
        self._stop_requested = True

    def update_settings(self, **changes: Any) -> None:
        """Change settings that may change between epochs (``lr``, and loss weights such as ``balance_loss``):
        validated as a TrainConfig; a new learning rate scales every parameter group alike (keeping their
        ratios) and restarts the plateau patience."""
        if not changes:
            return
        unknown = [k for k in changes if not hasattr(self.config, k)]
        if unknown:
            raise ValidationError("train", unknown[0], "is not a training setting")
        self.config = dataclasses.replace(self.config, **changes).validate()
        self.objective.set_weights(self.config)
        self._choose_gradient_path()  # a loss weight switched on needs autograd
        if "lr" in changes and self.config.lr != self.lr:
            ratio = self.config.lr / self.lr
            for group in self.optimizer.param_groups:
                group["lr"] = group["lr"] * ratio
            self._plateau_wait = 0
        if any(name in changes for name in AUX_LOSSES):
            self.objective.weights = {n: float(getattr(self.config, n)) for n in AUX_LOSSES
                                      if getattr(self.config, n) > 0}
            self._graphed = None  # a captured step holds the old weights
            if self.objective.weights and self._direct is not None:  # closed-form gradients lack aux losses
                self._direct, self.gradient_path = None, "autograd"
                self.gradient_path_reason = "balance or z loss"

    def history(self) -> pd.DataFrame:
        return pd.DataFrame(self.rows, columns=HISTORY_COLUMNS)

    def _snapshot(self) -> dict[str, torch.Tensor]:
        return {k: v.detach().clone() for k, v in self.model.state_dict().items()}

    def _check_output_shape(self) -> None:
        """Catch a model/target mismatch (e.g. sequence targets without return_sequences) before training."""
        was_training = self.model.training
        self.model.eval()
        with torch.no_grad():
            out = self.model(self._X[:2]).prediction
        self.model.train(was_training)
        y = self._y[:2]
        if self.task == "classification":
            n_classes = self.dataset.n_outputs
            if out.shape[-1] != n_classes or out.shape[:-1] != y.shape:
                raise ValidationError("model", f"output of shape {tuple(out.shape)}",
                                      f"must give {n_classes} class scores per row for labels of shape "
                                      f"{tuple(y.shape)}")
            return
        if out.shape == y.shape:
            return
        if y.dim() == 3 and out.dim() == 2:
            raise ValidationError("model.return_sequences", False, "must be true for this dataset: its targets "
                                  "are sequences (one value per time step)", "Use LSTM or GRU experts with "
                                  "return_sequences on.")
        if y.dim() == 2 and out.dim() == 3:
            raise ValidationError("model.return_sequences", True, "must be false for this dataset: it has one "
                                  "target per window")
        raise ValidationError("model", f"output of shape {tuple(out.shape)}",
                              f"must match the targets' shape {tuple(y.shape)}")

    # ----- training -------------------------------------------------------------------------------------------------
    def run_epochs(self, n: int = 1) -> list[EpochInfo]:
        """Train up to ``n`` more epochs (fewer if training ends); their records, oldest first."""
        with native.use(self.native_kernel):
            return self._run_epochs(n)

    def _run_epochs(self, n: int) -> list[EpochInfo]:
        infos: list[EpochInfo] = []
        for _ in range(max(0, int(n))):
            if self.done:
                break
            info = self._epoch()
            if info is None:
                break
            infos.append(info)
            if self.on_epoch is not None and self.on_epoch(info) is False:
                self.stop()
        return infos

    def _epoch(self) -> EpochInfo | None:
        started = time.perf_counter()
        cfg, opt = self.config, self.optimizer
        lr = self.lr
        n = self._X.shape[0]
        order = torch.randperm(n, generator=self._generator).to(self.device)
        X, y = self._X.index_select(0, order), self._y.index_select(0, order)
        clip = cfg.max_grad_norm
        total = torch.zeros((), device=self.device)
        self.model.train()
        for start in range(0, n, cfg.batch_size):
            xb, yb = X[start:start + cfg.batch_size], y[start:start + cfg.batch_size]
            graphed = self._graphed_step(xb, yb) if self.use_graphs else None
            # a graphed step updates the weights itself, skipping the update on the device when it is not ok
            loss, norm, ok = graphed(xb, yb) if graphed is not None else self._backward(xb, yb)
            if not bool(ok):  # one host sync per batch; no step taken: the weights stay finite
                self._diverge(self.epoch + 1, float(loss), float(norm))
                self.seconds += time.perf_counter() - started
                return None
            if graphed is None:
                if clip > 0:
                    torch.nn.utils.clip_grads_with_norm_(self._params, clip, norm)
                opt.step()
                if self._router_update is not None:  # e.g. sigmoid_bias: bias towards the mean load
                    self._router_update()
            total += loss * xb.shape[0]
        train_loss = float(total) / n
        val_loss, gate_weights, aux = self._validate()
        if not math.isfinite(val_loss):
            self._diverge(self.epoch + 1, val_loss, None, what="validation loss")
            self.seconds += time.perf_counter() - started
            return None
        self.epoch += 1
        self._after_epoch(val_loss)
        self.seconds += time.perf_counter() - started
        self.rows.append({"epoch": self.epoch, "train_loss": train_loss, "val_loss": val_loss, "lr": lr,
                          "seconds": self.seconds, **aux})
        left = 0 if self.done else cfg.epochs - self.epoch
        return EpochInfo(epoch=self.epoch, train_loss=train_loss, val_loss=val_loss, lr=lr,
                         seconds_elapsed=self.seconds, eta_seconds=self.seconds / self.epoch * left,
                         best_epoch=self.best_epoch,
                         gate_weights=gate_weights, epochs_total=cfg.epochs)

    def _device_step(self, xb: torch.Tensor, yb: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """One training step with no host sync (what a CUDA graph captures): the update is skipped on the device
        when the loss or gradient norm is not finite, or the norm explodes (clipping off); returns (loss, norm, ok)."""
        clip = self.config.max_grad_norm
        loss, norm, ok = self._backward(xb, yb)
        if clip > 0:
            torch.nn.utils.clip_grads_with_norm_(self._params, clip, norm)
        self.optimizer.step(skip=ok.logical_not().float())
        if self._router_update is not None:
            self._router_update()
        return loss, norm, ok

    def _backward(self, xb: torch.Tensor, yb: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Loss and gradients of one batch; returns (loss, gradient norm, ok) as tensors, without a host sync.
        ok is False for a non-finite loss or gradient (NaN compares False) or, with clipping off, an exploding
        norm: then the step must not be taken."""
        loss = self._direct.step(xb, yb) if self._direct is not None else None  # writes every p.grad
        if loss is None:
            if self._flat_grad is not None:
                self._flat_grad.zero_()
            else:
                self.optimizer.zero_grad(set_to_none=True)
            total, loss = self.objective(self.model(xb), yb)  # loss: the task part, what train_loss reports
            total.backward()
        else:
            total = loss
        norm = _grad_norm(self._params) if self._flat_grad is None else torch.linalg.vector_norm(self._flat_grad)
        limit = GRAD_NORM_LIMIT if self.config.max_grad_norm <= 0 else math.inf  # clipping on: only NaN/inf stop
        return loss.detach(), norm, torch.isfinite(total) & (norm < limit)

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
        state = [*self.model.parameters(), *self.optimizer.state_tensors()]
        try:
            self._graphed = GraphedStep(self._device_step, xb, yb, state, tag)
        except Exception as exc:  # an op that cannot be captured: train eagerly instead, nothing is lost
            self.use_graphs = False
            self.graph_error = f"{type(exc).__name__}: {exc}"
            torch.cuda.synchronize(self.device)
        return self._graphed

    def _validate(self) -> tuple[float, np.ndarray, dict[str, float]]:
        """Validation loss (eval mode, whole split), the gate weights of its first rows and the unweighted balance
        and z losses on the split (NaN without a gate), from one pass."""
        fields: tuple[str, ...] = ("prediction", "gate_weights", "expert_outputs", "aux")
        if self.objective.kind == "likelihood" and getattr(self.model, "router", None) is not None:
            fields += ("gate_probs",)
        out = batched_outputs(self.model, self._Xv, EVAL_BATCH, fields)
        with torch.no_grad():
            val_loss = float(self.objective.task_part(OutputFields(out), self._yv))
        aux = {name: float(out["aux"].get(name, math.nan)) for name in AUX_LOSSES}
        return val_loss, out["gate_weights"][:GATE_SUBSET_ROWS].detach().cpu().numpy(), aux

    def _after_epoch(self, val_loss: float) -> None:
        """Best weights, early stopping and plateau LR reduction (Keras semantics), in that order."""
        cfg = self.config
        if val_loss < self.best_val:
            self.best_val, self.best_epoch = val_loss, self.epoch
            self._best_state = self._snapshot()
            self._stop_wait = 0
        else:
            self._stop_wait += 1
        if cfg.lr_patience > 0:
            if val_loss < self._plateau_best - PLATEAU_MIN_DELTA:
                self._plateau_best, self._plateau_wait = val_loss, 0
            else:
                self._plateau_wait += 1
                if self._plateau_wait >= cfg.lr_patience and self.lr > cfg.min_lr:
                    ratio = max(self.lr * cfg.lr_factor, cfg.min_lr) / self.lr
                    for group in self.optimizer.param_groups:  # the gate's group keeps its scale
                        group["lr"] *= ratio
                    self._plateau_wait = 0
        if cfg.early_stopping > 0 and self._stop_wait >= cfg.early_stopping:
            self.stopped_reason = "early_stopping"
        elif self.epoch >= cfg.epochs:
            self.stopped_reason = "completed"

    def _diverge(self, epoch: int, loss: float, norm: float | None, what: str | None = None) -> None:
        self.message = divergence_message(epoch, loss, norm, what, self.best_epoch, self.best_val, self.lr,
                                          self.config.max_grad_norm)
        self.stopped_reason = "diverged"

    # ----- result ---------------------------------------------------------------------------------------------------
    def finish(self) -> TrainResult:
        """Restore the best weights, score them, and return the result (the same object on later calls)."""
        if self._result is not None:
            return self._result
        with native.use(self.native_kernel):
            return self._finish()

    def _finish(self) -> TrainResult:
        started = time.perf_counter()
        if self.stopped_reason is None:
            self.stopped_reason = "completed" if self.epoch >= self.config.epochs and not self._stop_requested \
                else "stopped"
        self.model.load_state_dict(self._best_state)
        self.model.eval()
        test = evaluate(self.model, self.dataset, "test")
        val = evaluate(self.model, self.dataset, "val")
        test.pop("loss", None)
        params = int(sum(p.numel() for p in self.model.parameters() if p.requires_grad))
        metrics = {**test, **{f"val_{k}": v for k, v in val.items()}, "params": params}
        self.seconds += time.perf_counter() - started
        self._result = TrainResult(history=self.history(), metrics=metrics, best_epoch=self.best_epoch,
                                   epochs_run=self.epoch, stopped_reason=self.stopped_reason, message=self.message,
                                   seconds=self.seconds, device=str(self.device), params=params)
        self._X = self._y = self._Xv = self._yv = torch.empty(0)  # release the device copies of the data
        self._best_state = {}
        return self._result


def fit(model: KAMoE, dataset: Dataset, train_config: TrainConfig, on_epoch: EpochCallback | None = None,
        should_stop: Callable[[], bool] | None = None) -> TrainResult:
    """Train to the end (epochs, early stopping, divergence, or ``should_stop()`` / ``on_epoch`` returning False).

    A diverged run is returned, not raised: ``stopped_reason == 'diverged'``, ``message`` holds the advice and the
    model holds the best weights found before the divergence.
    """
    trainer = Trainer(model, dataset, train_config, on_epoch)
    while not trainer.done:
        trainer.run_epochs(1)
        if should_stop is not None and should_stop():
            trainer.stop()
    return trainer.finish()

