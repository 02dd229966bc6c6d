"""The tracker: one set of calls fanned out to the chosen sinks (MLflow, TensorBoard)."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from kamoe_viz.routing_metrics import routing_summary
from kamoe_viz.training.results import EpochInfo

if TYPE_CHECKING:
    from kamoe_viz.data.base import Dataset

LOAD_TAG = "routing/load"  # the per-expert load histogram (and, in MLflow, routing/load/expert_<e> series)
ROUTING_PREFIX = "routing/"
ROUTING_SCALARS = (
    "load_cv",
    "max_violation",
    "max_violation_batch",
    "gini",
    "min_load",
    "max_load",
    "routing_entropy",
    "dropped_fraction",
    "nmi",
    "ari",
    "mutual_information",
)


class Sink(Protocol):
    """Where a tracker writes (see :mod:`kamoe_viz.tracking.sinks`)."""

    def log_params(self, params: Mapping[str, str]) -> None: ...

    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None: ...

    def log_load(self, load: Sequence[float], step: int) -> None: ...

    def close(self, status: str) -> None: ...


def _flatten(value: Any, prefix: str, out: dict[str, str]) -> None:
    if isinstance(value, Mapping):
        for key, item in value.items():
            _flatten(item, f"{prefix}.{key}" if prefix else str(key), out)
    elif isinstance(value, (list, tuple)):
        out[prefix] = ",".join(map(str, value))
    else:
        out[prefix] = str(value)


def config_params(config: Any) -> dict[str, str]:
    """A RunConfig (or its dict) as flat ``section.field`` -> text parameters, e.g. ``model.gate: grkan``."""
    raw = config.to_dict() if hasattr(config, "to_dict") else dict(config)
    out: dict[str, str] = {}
    _flatten(raw, "", out)
    return out


def finite_metrics(values: Mapping[str, Any]) -> dict[str, float]:
    """The numeric, finite entries (NaN such as NMI without known regimes is left out, not logged as 0)."""
    out: dict[str, float] = {}
    for key, value in values.items():
        if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)):
            continue
        if math.isfinite(float(value)):
            out[key] = float(value)
    return out


def load_metrics(summary: Mapping[str, Any]) -> dict[str, float]:
    """``routing/<metric>`` scalars of a :func:`kamoe_viz.routing_metrics.routing_summary`."""
    picked = {f"{ROUTING_PREFIX}{k}": summary[k] for k in ROUTING_SCALARS if k in summary}
    return finite_metrics(picked)


EPOCH_KEYS = ("train_loss", "val_loss", "lr")  # logged once per epoch


def epoch_metrics(info: EpochInfo) -> dict[str, float]:
    return finite_metrics({k: getattr(info, k) for k in EPOCH_KEYS})


class Tracker:
    """Fans every call out to its sinks; a sink that is not asked for is never imported."""

    def __init__(self, sinks: Sequence[Sink]) -> None:
        self.sinks = list(sinks)

    @classmethod
    def open(
        cls,
        params: Mapping[str, str],
        run_name: str,
        *,
        mlflow: bool = False,
        tensorboard: str | None = None,
        experiment: str = "kamoe-viz",
        parent: Tracker | None = None,
    ) -> Tracker:
        """Start a run in each chosen store (MLflow: ``MLFLOW_TRACKING_URI`` or ``sqlite:///mlflow.db``;
        TensorBoard: ``tensorboard/<run_name>``) and log ``params``. A ``parent`` nests MLflow runs."""
        from kamoe_viz.tracking import sinks

        chosen: list[Sink] = []
        if mlflow:
            parent_id = next(
                (s.run_id for s in (parent.sinks if parent else []) if isinstance(s, sinks.MlflowSink)), None
            )
            chosen.append(sinks.MlflowSink(run_name, experiment=experiment, parent_run_id=parent_id))
        if tensorboard:
            chosen.append(sinks.TensorBoardSink(tensorboard, run_name))
        tracker = cls(chosen)
        tracker.log_params(params)
        return tracker

    @property
    def active(self) -> bool:
        return bool(self.sinks)

    def log_params(self, params: Mapping[str, str]) -> None:
        for sink in self.sinks:
            sink.log_params(params)

    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None:
        values = finite_metrics(metrics)
        for sink in self.sinks:
            sink.log_metrics(values, step)

    def log_routing(self, weights: Any, step: int, regimes: Any = None, batch_size: int | None = None) -> None:
        """Routing metrics and the per-expert load histogram of one set of gate weights."""
        w = np.asarray(weights)
        if regimes is not None and np.asarray(regimes).size != int(np.prod(w.shape[:-1])):
            regimes = None  # e.g. per-window regimes next to per-time-step weights: no NMI rather than a wrong one
        summary = routing_summary(w, regimes, batch_size)
        self.log_metrics(load_metrics(summary), step)
        for sink in self.sinks:
            sink.log_load(summary["load"], step)

    def epoch_logger(
        self,
        dataset: Dataset | None = None,
        batch_size: int | None = None,
        then: Callable[[EpochInfo], Any] | None = None,
    ) -> Callable[[EpochInfo], Any]:
        """An ``on_epoch`` callback: losses and learning rate, and routing metrics of the validation subset the
        trainer hands over (its first rows, whose regimes are known when the dataset has them); ``then`` is called
        after (e.g. the progress bar) and its answer returned."""
        regimes = getattr(dataset, "regimes_val", None)

        def log(info: EpochInfo) -> Any:
            self.log_metrics(epoch_metrics(info), info.epoch)
            if info.gate_weights is not None:
                rows = len(info.gate_weights)
                self.log_routing(info.gate_weights, info.epoch, None if regimes is None else regimes[:rows], batch_size)
            return then(info) if then is not None else None

        return log

    def close(self, status: str = "FINISHED") -> None:
        for sink in self.sinks:
            sink.close(status)
        self.sinks = []
