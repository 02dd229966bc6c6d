"""What happens after each epoch, from its validation loss: best weights, early stopping, plateau LR reduction.

Keras semantics (``EarlyStopping`` with ``restore_best_weights``, ``ReduceLROnPlateau``), in that order; shared by
:class:`kamoe_viz.training.Trainer` and the batched multi-seed training (:mod:`kamoe_viz.training.batched`), so
both stop and lower the learning rate in the same epochs.
"""

from __future__ import annotations

import math
from typing import NamedTuple

from kamoe_viz.config import TrainConfig

PLATEAU_MIN_DELTA = 1e-4  # as Keras' ReduceLROnPlateau: a smaller improvement does not reset its patience


class Decision(NamedTuple):
    improved: bool  # a new best validation loss: keep these weights
    lr: float  # the learning rate for the next epoch (lowered on a plateau)
    stopped_reason: str | None  # "early_stopping", "completed", or None to go on


class Schedule:
    """The after-epoch bookkeeping of one run; :meth:`observe` is called once per finished epoch."""

    def __init__(self, config: TrainConfig) -> None:
        self.config = config
        self.best_val = math.inf
        self.best_epoch: int | None = None
        self.stop_wait = 0
        self.plateau_best = math.inf
        self.plateau_wait = 0

    def observe(self, epoch: int, val_loss: float, lr: float) -> Decision:
        """Record epoch ``epoch``'s validation loss, trained at learning rate ``lr``."""
        cfg = self.config
        improved = val_loss < self.best_val
        if improved:
            self.best_val, self.best_epoch = val_loss, epoch
            self.stop_wait = 0
        else:
            self.stop_wait += 1
        if cfg.lr_patience > 0:
            if val_loss < self.plateau_best - PLATEAU_MIN_DELTA:
                self.plateau_best, self.plateau_wait = val_loss, 0
            else:
                self.plateau_wait += 1
                if self.plateau_wait >= cfg.lr_patience and lr > cfg.min_lr:
                    lr = max(lr * cfg.lr_factor, cfg.min_lr)
                    self.plateau_wait = 0
        reason = None
        if cfg.early_stopping > 0 and self.stop_wait >= cfg.early_stopping:
            reason = "early_stopping"
        elif epoch >= cfg.epochs:
            reason = "completed"
        return Decision(improved, lr, reason)

    def restart_plateau(self) -> None:
        """A new learning rate set by hand: the plateau patience starts again."""
        self.plateau_wait = 0


__all__ = ["PLATEAU_MIN_DELTA", "Decision", "Schedule"]
