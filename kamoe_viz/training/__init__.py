"""Training: :class:`Trainer` (bursts of epochs), :func:`fit`, :func:`train_run`, evaluation and prediction;
``training.live`` runs them as jobs a front end advances or leaves in a background thread.

Adam with MSE (regression) or cross-entropy (classification), early stopping with best-weights restore, plateau LR
reduction, optional gradient clipping, a divergence guard that stops cleanly with advice, and device selection
(``auto`` = CUDA, else MPS, else CPU).
"""

from kamoe_viz.training.devices import available_devices, configure_cpu_threads, resolve_device, tune_allocator
from kamoe_viz.training.evaluation import evaluate, predict
from kamoe_viz.training.pipeline import baseline_config, train_run
from kamoe_viz.training.results import STOP_REASONS, EpochInfo, TrainedRun, TrainResult
from kamoe_viz.training.trainer import GATE_SUBSET_ROWS, GRAD_NORM_LIMIT, Trainer, fit

__all__ = [
    "GATE_SUBSET_ROWS",
    "GRAD_NORM_LIMIT",
    "STOP_REASONS",
    "EpochInfo",
    "TrainResult",
    "TrainedRun",
    "Trainer",
    "available_devices",
    "baseline_config",
    "configure_cpu_threads",
    "evaluate",
    "fit",
    "predict",
    "resolve_device",
    "train_run",
    "tune_allocator",
]
