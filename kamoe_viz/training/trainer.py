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
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import torch

from kamoe_viz.config import TrainConfig
from kamoe_viz.errors import TrainingDivergedError, ValidationError
from kamoe_viz.nn.fast import native
from kamoe_viz.training.devices import resolve_device
from kamoe_viz.training.evaluation import (
    EVAL_BATCH,
    batched_outputs,
    check_input,
    evaluate,
    input_tensor,
    target_tensor,
)
from kamoe_viz.training.objectives import AUX_LOSSES, Objective, OutputFields, prepare_model
from kamoe_viz.training.restarts import choose_initialisation
from kamoe_viz.training.results import HISTORY_COLUMNS, EpochInfo, TrainResult
from kamoe_viz.training.schedule import Schedule
from kamoe_viz.training.step import GRAD_NORM_LIMIT, Stepper

if TYPE_CHECKING:
    from kamoe_viz.data.base import Dataset
    from kamoe_viz.nn.moe import KAMoE

GATE_SUBSET_ROWS = 512  # validation rows whose gate weights every EpochInfo carries

EpochCallback = Callable[[EpochInfo], Any]


def divergence_message(
    epoch: int,
    loss: float,
    norm: float | None,
    what: str | None,
    best_epoch: int | None,
    best_val: float,
    lr: float,
    clip: float,
) -> str:
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
    kept = (
        f"the weights of epoch {best_epoch} (validation loss {best_val:.4g})"
        if best_epoch is not None
        else "the initial weights (no epoch had finished)"
    )
    clipping = (
        "enable gradient clipping (train.max_grad_norm, e.g. 1.0)"
        if clip <= 0
        else f"clip gradients harder (train.max_grad_norm, currently {clip:g})"
    )
    return (
        f"Training diverged in epoch {epoch}: the {what}. Kept {kept}. Lower the learning rate "
        f"(currently {lr:g}), scale the inputs, or {clipping}."
    )


class Trainer:
    """Trains ``model`` on ``dataset`` with ``train_config``, a burst of epochs at a time.

    ``run_epochs(n)`` trains up to n more epochs and returns their :class:`EpochInfo`; ``on_epoch`` is called after
    each and may return False to stop. ``stop()`` ends training after the current epoch; ``done`` says whether
    training has ended (completed, early stopping, divergence or stop); ``finish()`` restores the best weights,
    scores them on the validation and test splits and returns the :class:`TrainResult`.
    """

    def __init__(
        self,
        model: KAMoE,
        dataset: Dataset,
        train_config: TrainConfig,
        on_epoch: EpochCallback | None = None,
        raise_on_divergence: bool = False,
    ) -> None:
        self.config = dataclasses.replace(train_config).validate()
        self.device = resolve_device(self.config.device)
        self.dataset = dataset
        self.task = dataset.task
        self.on_epoch = on_epoch
        if len(dataset.X_train) == 0:
            raise ValidationError("dataset", dataset.name, "has no training rows; it needs at least one")
        check_input(model, dataset.X_train, "dataset.X_train")
        self.model = prepare_model(model, self.config).to(self.device)
        self._X = input_tensor(dataset.X_train, self.device)
        self._y = target_tensor(self.task, dataset.y_train, self.device)
        if len(dataset.X_val):
            self._Xv = input_tensor(dataset.X_val, self.device)
            self._yv = target_tensor(self.task, dataset.y_val, self.device)
        else:  # no validation split: monitor the training data instead
            self._Xv, self._yv = self._X, self._y
        self._check_output_shape()
        # train.restarts > 1: the initialisation that looks best after a few epochs (kamoe_viz.training.restarts)
        self.restart_losses, self.restart_chosen, restart_seconds = choose_initialisation(
            self.model, dataset, self.config
        )
        self.objective = Objective(self.config, self.task).to(self.device)
        # the optimiser, the gradient path and the other speed-ups are chosen there, once for the run
        self.stepper = Stepper(self.model, self.objective, self.config, self.task, self.device)
        self._generator = torch.Generator().manual_seed(self.config.seed)
        self.epoch = 0
        self.rows: list[dict[str, float]] = []
        self.schedule = Schedule(self.config)
        self._best_state = self._snapshot()  # the initial weights until an epoch improves on them
        self._stop_requested = False
        self.stopped_reason: str | None = None
        self.message: str | None = None
        self.raise_on_divergence = raise_on_divergence
        self.error: TrainingDivergedError | None = None  # set when training diverged
        self.seconds = restart_seconds  # the restarts' search counts as the run's time
        self._result: TrainResult | None = None

    # ----- the step's implementation (chosen by kamoe_viz.training.step) -------------------------------------------
    @property
    def optimizer(self) -> Any:
        return self.stepper.optimizer

    @property
    def gradient_path(self) -> str:
        """ "direct" (closed-form gradients) or "autograd"; ``gradient_path_reason`` says why not direct."""
        return self.stepper.gradient_path

    @property
    def gradient_path_reason(self) -> str | None:
        return self.stepper.gradient_path_reason

    @property
    def native_kernel(self) -> bool:
        """Whether this run's KAN layers use the C kernel."""
        return self.stepper.kernel is not None

    @property
    def use_graphs(self) -> bool:
        return self.stepper.use_graphs

    @property
    def graph_error(self) -> str | None:
        """Why CUDA graphs were turned off for this run, if they were."""
        return self.stepper.graph_error

    @property
    def best_epoch(self) -> int | None:
        return self.schedule.best_epoch

    @property
    def best_val(self) -> float:
        return self.schedule.best_val

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
        self.schedule.config = self.config
        self.stepper.choose(self.config)  # the closed-form path takes the new loss weights too
        if "lr" in changes and self.config.lr != self.lr:
            self.stepper.scale_lr(self.config.lr / self.lr)
            self.schedule.restart_plateau()

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
                raise ValidationError(
                    "model",
                    f"output of shape {tuple(out.shape)}",
                    f"must give {n_classes} class scores per row for labels of shape {tuple(y.shape)}",
                )
            return
        if out.shape == y.shape:
            return
        if y.dim() == 3 and out.dim() == 2:
            raise ValidationError(
                "model.return_sequences",
                False,
                "must be true for this dataset: its targets are sequences (one value per time step)",
                "Use LSTM or GRU experts with return_sequences on.",
            )
        if y.dim() == 2 and out.dim() == 3:
            raise ValidationError(
                "model.return_sequences", True, "must be false for this dataset: it has one target per window"
            )
        raise ValidationError(
            "model", f"output of shape {tuple(out.shape)}", f"must match the targets' shape {tuple(y.shape)}"
        )

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
        cfg, lr = self.config, self.lr
        n = self._X.shape[0]
        order = torch.randperm(n, generator=self._generator).to(self.device)
        X, y = self._X.index_select(0, order), self._y.index_select(0, order)
        total = torch.zeros((), device=self.device)
        self.model.train()
        for start in range(0, n, cfg.batch_size):
            xb, yb = X[start : start + cfg.batch_size], y[start : start + cfg.batch_size]
            loss, norm, ok = self.stepper(xb, yb)
            if not bool(ok):  # one host sync per batch; no step was taken: the weights stay finite
                self._diverge(self.epoch + 1, float(loss), float(norm))
                self.seconds += time.perf_counter() - started
                return None
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
        self.rows.append(
            {
                "epoch": self.epoch,
                "train_loss": train_loss,
                "val_loss": val_loss,
                "lr": lr,
                "seconds": self.seconds,
                **aux,
            }
        )
        left = 0 if self.done else cfg.epochs - self.epoch
        return EpochInfo(
            epoch=self.epoch,
            train_loss=train_loss,
            val_loss=val_loss,
            lr=lr,
            seconds_elapsed=self.seconds,
            eta_seconds=self.seconds / self.epoch * left,
            best_epoch=self.best_epoch,
            gate_weights=gate_weights,
            epochs_total=cfg.epochs,
        )

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
        """Best weights, early stopping and plateau LR reduction (:class:`~kamoe_viz.training.schedule.Schedule`)."""
        decision = self.schedule.observe(self.epoch, val_loss, self.lr)
        if decision.improved:
            self._best_state = self._snapshot()
        if decision.lr != self.lr:
            self.stepper.scale_lr(decision.lr / self.lr)  # the gate's group keeps its scale
        if decision.stopped_reason is not None:
            self.stopped_reason = decision.stopped_reason

    def _diverge(self, epoch: int, loss: float, norm: float | None, what: str | None = None) -> None:
        """Stop: the weights are left at the last finite step; ``finish()`` restores the best ones. With
        ``raise_on_divergence`` the :class:`~kamoe_viz.errors.TrainingDivergedError` is raised from here."""
        self.message = divergence_message(
            epoch, loss, norm, what, self.best_epoch, self.best_val, self.lr, self.config.max_grad_norm
        )
        self.stopped_reason = "diverged"
        self.error = TrainingDivergedError(self.message, epoch=epoch, best_epoch=self.best_epoch)
        if self.raise_on_divergence:
            raise self.error

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
            self.stopped_reason = (
                "completed" if self.epoch >= self.config.epochs and not self._stop_requested else "stopped"
            )
        self.model.load_state_dict(self._best_state)
        self.model.eval()
        test = evaluate(self.model, self.dataset, "test")
        val = evaluate(self.model, self.dataset, "val")
        test.pop("loss", None)
        params = int(sum(p.numel() for p in self.model.parameters() if p.requires_grad))
        metrics = {**test, **{f"val_{k}": v for k, v in val.items()}, "params": params}
        self.seconds += time.perf_counter() - started
        self._result = TrainResult(
            history=self.history(),
            metrics=metrics,
            best_epoch=self.best_epoch,
            epochs_run=self.epoch,
            stopped_reason=self.stopped_reason,
            message=self.message,
            seconds=self.seconds,
            device=str(self.device),
            params=params,
        )
        self._X = self._y = self._Xv = self._yv = torch.empty(0)  # release the device copies of the data
        self._best_state = {}
        return self._result


def fit(
    model: KAMoE,
    dataset: Dataset,
    train_config: TrainConfig,
    on_epoch: EpochCallback | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> TrainResult:
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
