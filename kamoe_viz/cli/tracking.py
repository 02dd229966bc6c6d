"""`--mlflow` and `--tensorboard DIR` for `train` and `compare` (see :mod:`kamoe_viz.tracking`)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kamoe_viz.errors import ValidationError

if TYPE_CHECKING:
    from kamoe_viz.config import RunConfig
    from kamoe_viz.tracking import Tracker
    from kamoe_viz.training.results import TrainedRun

EXPERIMENT = "kamoe-viz"


def add_options(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("experiment tracking (pip install 'kamoe-viz[tracking]')")
    g.add_argument(
        "--mlflow",
        action="store_true",
        help="log settings, per-epoch losses, routing metrics and per-expert load to MLflow "
        "($MLFLOW_TRACKING_URI, else sqlite:///mlflow.db in the working directory)",
    )
    g.add_argument(
        "--mlflow-experiment",
        default=EXPERIMENT,
        metavar="NAME",
        help="MLflow experiment (default %(default)s; created when missing)",
    )
    g.add_argument(
        "--tensorboard",
        default=None,
        metavar="DIR",
        help="write the same as TensorBoard event files under DIR/<run name>",
    )


def wanted(args: argparse.Namespace) -> bool:
    return bool(getattr(args, "mlflow", False) or getattr(args, "tensorboard", None))


def _check(args: argparse.Namespace) -> None:
    """Refuse before any training: an empty name, or a store whose package is not installed."""
    import importlib.util

    from kamoe_viz.tracking.sinks import INSTALL_HINT

    if getattr(args, "mlflow", False) and importlib.util.find_spec("mlflow") is None:
        raise ValidationError("--mlflow", True, INSTALL_HINT)
    if getattr(args, "tensorboard", None) and importlib.util.find_spec("tensorboard") is None:
        raise ValidationError("--tensorboard", args.tensorboard, INSTALL_HINT)
    if not str(getattr(args, "mlflow_experiment", EXPERIMENT) or "").strip():
        raise ValidationError("--mlflow-experiment", args.mlflow_experiment, "must be a non-empty name")
    folder = getattr(args, "tensorboard", None)
    if folder is not None and (not str(folder).strip() or (Path(folder).exists() and not Path(folder).is_dir())):
        raise ValidationError("--tensorboard", folder, "must be a folder (it is created when missing)")


def train_run_name(config: RunConfig) -> str:
    m = config.model
    what = "standard" if m.kind == "standard" else f"{m.gate}-{m.n_experts}x{m.expert}"
    return f"{config.data.name} {what} seed{config.train.seed}"


def open_for_train(args: argparse.Namespace, config: RunConfig) -> Tracker | None:
    """The tracker of one `train` run, or None when neither option is given (nothing imported then)."""
    if not wanted(args):
        return None
    _check(args)
    from kamoe_viz.tracking import Tracker, config_params

    return Tracker.open(
        config_params(config),
        train_run_name(config),
        mlflow=bool(args.mlflow),
        tensorboard=args.tensorboard,
        experiment=args.mlflow_experiment,
    )


def finish_train(tracker: Tracker | None, run: TrainedRun) -> None:
    """Final test/validation metrics at the last epoch, then close (FAILED when training diverged)."""
    if tracker is None:
        return
    from kamoe_viz.tracking.core import EPOCH_KEYS

    result = run.result
    final = {("best_" + k if k in EPOCH_KEYS else k): v for k, v in result.metrics.items()}  # not a 2nd val_loss
    tracker.log_metrics({**final, "params": result.params, "best_epoch": result.best_epoch or 0}, result.epochs_run)
    tracker.close("FAILED" if result.stopped_reason == "diverged" else "FINISHED")


def check(args: argparse.Namespace) -> None:
    """For `compare`: fail on a bad tracking option before the comparison starts."""
    if wanted(args):
        _check(args)


def log_compare(args: argparse.Namespace, result: Any) -> None:
    if not wanted(args):
        return
    from kamoe_viz.tracking import log_comparison

    log_comparison(result, mlflow=bool(args.mlflow), tensorboard=args.tensorboard, experiment=args.mlflow_experiment)
