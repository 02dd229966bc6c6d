"""One run of a comparison, and running many of them in this process or in worker processes.

A :class:`RunSpec` is a fully specified :class:`~kamoe_viz.config.RunConfig` plus the labels that place it in the
results table (variant, seed, and for reproductions expert/layers/width). :func:`execute` trains it and measures
what the comparison needs; it returns plain picklable data so that worker processes can send it back.

Parallel runs use processes (``spawn``), never threads: PyTorch on CPU already uses threads inside one run, and two
runs sharing those threads only fight. Each worker uses one torch thread (``KAMOE_THREADS`` overrides): these
small models train fastest that way, see :func:`kamoe_viz.training.configure_cpu_threads`.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from kamoe_viz import routing_metrics
from kamoe_viz.compare.results_file import RUN_KEY, run_key
from kamoe_viz.config import RunConfig
from kamoe_viz.errors import KamoeError, TrainingDivergedError

if TYPE_CHECKING:
    from kamoe_viz.data.base import Dataset
    from kamoe_viz.training.results import EpochInfo, TrainedRun

GATE_SAMPLE_ROWS = 256
# routing_metrics.routing_summary keys each row carries (routing_entropy and nmi are gate_entropy and regime_nmi)
ROUTING_COLUMNS = ("load_cv", "max_violation", "gini", "min_load", "dropped_fraction")


@dataclass
class RunSpec:
    """One training run of a comparison."""

    index: int
    variant: str  # "standard", "linear", "grn" or "grkan" (or a protocol label)
    seed: int
    config: RunConfig
    labels: dict[str, Any] = field(default_factory=dict)  # extra columns, e.g. expert / layers / width


@dataclass
class RunOutcome:
    """What one run hands back: its table row, its learning curve, and gate weights on the shared sample rows."""

    index: int
    row: dict[str, Any]
    history: pd.DataFrame
    gate_weights: np.ndarray | None  # (rows, E), or None when the run failed before training finished
    regimes: np.ndarray | None = None  # the true regime of each of those rows, when the dataset knows them


def data_key(config: RunConfig) -> str:
    """Runs with equal keys see exactly the same data split."""
    return json.dumps(config.to_dict()["data"], sort_keys=True)


def gate_entropy(weights: np.ndarray) -> float:
    """Mean normalised routing entropy (see :mod:`kamoe_viz.routing_metrics`); NaN for a single expert."""
    return routing_metrics.routing_entropy(weights)


def regime_agreement(weights: np.ndarray, regimes: np.ndarray | None) -> float:
    """NMI between each row's winning expert and its true regime (see :mod:`kamoe_viz.routing_metrics`); the
    weights are of the first rows of the split, so the regimes are cut to match."""
    if regimes is None or weights is None:
        return float("nan")
    w = routing_metrics.flat_weights(weights)
    if w.shape[1] < 2:
        return float("nan")
    return routing_metrics.regime_nmi(w, np.asarray(regimes).reshape(-1)[: len(w)])


def _primary_metric(task: str) -> str:
    return "accuracy" if task == "classification" else "r2"


def _flat_gate_weights(gw: Any) -> np.ndarray | None:
    if gw is None:
        return None
    w = np.asarray(gw, dtype=np.float32)
    if w.ndim == 3:  # (B, T, E) for return_sequences: the last step stands for the window
        w = w[:, -1, :]
    return w


# ----- one run -------------------------------------------------------------------------------------------------------
_DATASETS: dict[str, Dataset] = {}  # per-process cache: data key -> Dataset


def _dataset_for(config: RunConfig, dataset: Dataset | None = None) -> Dataset:
    key = data_key(config)
    if dataset is not None:
        _DATASETS.setdefault(key, dataset)
    if key not in _DATASETS:
        from kamoe_viz.data import load_dataset

        _DATASETS[key] = load_dataset(config.data)
    return _DATASETS[key]


def base_row(spec: RunSpec, ds: Dataset) -> dict[str, Any]:
    """The columns of a run's row that are known before it trains (what it is, not how it did)."""
    model_cfg = spec.config.model
    return {
        "variant": spec.variant,
        "kind": model_cfg.kind,
        "gate": model_cfg.gate if model_cfg.kind == "moe" else "none",
        "expert": model_cfg.expert,
        "n_experts": 1 if model_cfg.kind == "standard" else model_cfg.n_experts,
        "routing": model_cfg.routing if model_cfg.kind == "moe" else "none",
        **spec.labels,
        "seed": spec.seed,
        "data_seed": spec.config.data.seed,
        "dataset": ds.name,
        "metric": _primary_metric(ds.task),
        "test_metric": float("nan"),
        RUN_KEY: run_key(spec.variant, spec.labels, spec.config.to_dict()),
    }


def error_outcome(spec: RunSpec, ds: Dataset, message: str) -> RunOutcome:
    """A run that could not finish (a worker died, an unexpected exception): a row saying so, never a crash."""
    row = base_row(spec, ds)
    row.update(
        train_seconds=float("nan"),
        params=float("nan"),
        epochs_run=float("nan"),
        best_epoch=float("nan"),
        stopped_reason="error",
        diverged=False,
        message=message,
        gate_entropy=float("nan"),
        regime_nmi=float("nan"),
        device="",
        **dict.fromkeys(ROUTING_COLUMNS, float("nan")),
    )
    return RunOutcome(spec.index, row, pd.DataFrame(columns=["epoch", "train_loss", "val_loss"]), None)


def routing_columns(weights: np.ndarray | None) -> dict[str, float]:
    """The :data:`ROUTING_COLUMNS` of a run's gate weights (NaN without a gate)."""
    if weights is None or routing_metrics.flat_weights(weights).shape[1] < 2:
        return dict.fromkeys(ROUTING_COLUMNS, float("nan"))
    summary = routing_metrics.routing_summary(weights)
    return {k: float(summary[k]) for k in ROUTING_COLUMNS}


def execute(
    spec: RunSpec,
    dataset: Dataset | None = None,
    on_epoch: Callable[[EpochInfo], None] | None = None,
    sample_rows: int = GATE_SAMPLE_ROWS,
) -> RunOutcome:
    """Train one spec and measure it. A diverged run comes back flagged, with its message, never dropped."""
    from kamoe_viz.training import train_run

    ds = _dataset_for(spec.config, dataset)
    row = base_row(spec, ds)
    started = time.perf_counter()
    try:
        trained = train_run(spec.config, dataset=ds, on_epoch=on_epoch)
    except TrainingDivergedError as exc:  # the trainer may raise instead of returning a 'diverged' result
        row.update(
            train_seconds=time.perf_counter() - started,
            params=float("nan"),
            epochs_run=float("nan"),
            best_epoch=float("nan"),
            stopped_reason="diverged",
            diverged=True,
            message=str(exc),
            gate_entropy=float("nan"),
            regime_nmi=float("nan"),
            device="",
            **dict.fromkeys(ROUTING_COLUMNS, float("nan")),
        )
        return RunOutcome(spec.index, row, pd.DataFrame(columns=["epoch", "train_loss", "val_loss"]), None)
    return measure(spec, ds, trained, sample_rows, row)


def measure(
    spec: RunSpec,
    ds: Dataset,
    trained: TrainedRun,
    sample_rows: int = GATE_SAMPLE_ROWS,
    row: dict[str, Any] | None = None,
) -> RunOutcome:
    """The outcome of a trained run (alone or one seed of a batched task): metrics, gate sample, routing."""
    from kamoe_viz.training import predict

    row = dict(row) if row is not None else base_row(spec, ds)
    metric = row["metric"]
    model_cfg = spec.config.model
    result = trained.result
    metrics = {k: float(v) for k, v in (result.metrics or {}).items() if isinstance(v, (int, float))}
    row["test_metric"] = metrics.get(metric, float("nan"))
    for key, value in metrics.items():
        row[key if key.startswith("val_") else f"test_{key}"] = value
    X_test = ds.X_test[:sample_rows]
    weights = None
    if model_cfg.kind == "moe":
        weights = _flat_gate_weights(predict(trained.model, X_test).get("gate_weights"))
    regimes = ds.regimes_test[:sample_rows] if ds.regimes_test is not None else None
    reason = str(result.stopped_reason)
    row.update(
        train_seconds=float(result.seconds),
        params=int(result.params),
        epochs_run=int(result.epochs_run),
        best_epoch=int(result.best_epoch) if result.best_epoch is not None else float("nan"),
        stopped_reason=reason,
        diverged=reason == "diverged",
        message=result.message or "",
        gate_entropy=gate_entropy(weights) if weights is not None else float("nan"),
        regime_nmi=regime_agreement(weights, regimes) if weights is not None else float("nan"),
        **routing_columns(weights),
        device=str(result.device),
    )
    history = result.history.copy() if result.history is not None else pd.DataFrame()
    return RunOutcome(spec.index, row, history, weights, None if regimes is None else np.asarray(regimes).reshape(-1))


# ----- many runs -----------------------------------------------------------------------------------------------------
def _init_worker(datasets: dict[str, Any]) -> None:
    from kamoe_viz.training import configure_cpu_threads, tune_allocator

    configure_cpu_threads()
    tune_allocator()  # a process that only trains
    _DATASETS.update(datasets)


def cpu_count() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


__all__ = [
    "GATE_SAMPLE_ROWS",
    "ROUTING_COLUMNS",
    "KamoeError",
    "RunOutcome",
    "RunSpec",
    "cpu_count",
    "data_key",
    "execute",
    "gate_entropy",
    "regime_agreement",
    "routing_columns",
]
