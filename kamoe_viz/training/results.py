"""What training hands back: one record per epoch, the final result, and a trained run (config + data + model)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    from kamoe_viz.config import RunConfig, TrainConfig
    from kamoe_viz.data.base import Dataset
    from kamoe_viz.nn.moe import KAMoE
    from kamoe_viz.training.timeline import Timeline

# balance_loss, z_loss: the routers' Switch auxiliary loss and z-loss on the validation split, unweighted (NaN
# without a gate); logged whether or not training weights them in
HISTORY_COLUMNS = ["epoch", "train_loss", "val_loss", "lr", "seconds", "balance_loss", "z_loss"]
STOP_REASONS = ("completed", "early_stopping", "diverged", "stopped")


@dataclass
class EpochInfo:
    """One finished epoch, as handed to ``on_epoch`` callbacks (progress bars, live charts)."""

    epoch: int  # 1-based
    train_loss: float  # mean loss over the epoch's batches (train mode)
    val_loss: float  # loss on the whole validation split (eval mode); what early stopping watches
    lr: float  # learning rate used during this epoch
    seconds_elapsed: float  # training time so far
    eta_seconds: float  # time left if every remaining epoch runs (an upper bound under early stopping)
    best_epoch: int | None  # epoch with the lowest validation loss so far
    gate_weights: np.ndarray | None = None  # (n, E) or (n, T, E) on a fixed validation subset (<= 512 rows)
    epochs_total: int = 0  # train.epochs


@dataclass
class TrainResult:
    """How a training run went: per-epoch history, test and validation metrics, why it stopped."""

    history: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=HISTORY_COLUMNS))
    metrics: dict[str, float] = field(default_factory=dict)  # r2, rmse | accuracy, log_loss; val_*; params
    best_epoch: int | None = None
    epochs_run: int = 0
    stopped_reason: str = "completed"  # one of STOP_REASONS
    message: str | None = None  # advice when diverged, else None
    seconds: float = 0.0  # training time (epochs and final evaluation), not idle time between bursts
    device: str = "cpu"
    params: int = 0

    @property
    def diverged(self) -> bool:
        return self.stopped_reason == "diverged"


@dataclass
class TrainedRun:
    """A finished run: its settings, its data, the model (on CPU, eval mode) and how training went."""

    config: RunConfig
    dataset: Dataset
    model: KAMoE
    result: TrainResult
    run_id: str | None = None
    timeline: Timeline | None = None  # None: not recorded, or saved before timelines


def sweep_epoch_cap_notice(reasons: list[str], epochs_run: list[int], train_config: TrainConfig) -> str | None:
    """The sweep form of :func:`epoch_cap_notice`: how many of its runs ran out of epochs while early stopping was
    on (``reasons``/``epochs_run``: each run's stopped_reason and epochs). None when none did."""
    patience = getattr(train_config, "early_stopping", 0)
    capped = sum(r == "completed" and int(e) >= train_config.epochs for r, e in zip(reasons, epochs_run, strict=True))
    if not patience or not capped:
        return None
    return (
        f"{capped} of {len(reasons)} runs stopped at the epoch cap ({train_config.epochs} epochs), not by early "
        f"stopping (patience {patience}): their validation loss may still be improving; more epochs may help."
    )


def epoch_cap_notice(result: TrainResult, train_config: TrainConfig) -> str | None:
    """A note when training ran out of epochs while early stopping was on (the validation loss was still
    improving, or at least not stalled for the patience): more epochs may help. None otherwise."""
    patience = getattr(train_config, "early_stopping", 0)
    if result.stopped_reason != "completed" or not patience or result.epochs_run < train_config.epochs:
        return None
    return (
        f"Training stopped at the epoch cap ({train_config.epochs} epochs), not by early stopping (patience "
        f"{patience}): the validation loss may still be improving; more epochs may help."
    )
