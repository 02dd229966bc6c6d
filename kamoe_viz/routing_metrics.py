"""Routing metrics, defined once: every page, the CLI, Compare and the training timeline read them from here.

All functions take gate weights ``(rows, E)`` (a sequence gate's ``(rows, T, E)`` is flattened over time steps)
and work for every router: sigmoid weights that need not sum to 1, softmax shares, sparse top-k weights and
expert-choice rows that no expert took (all weights 0).

- **load** of expert e: its top-1 share, the fraction of routed rows where e has the largest weight. Loads sum to 1
  (rows that no expert took are left out; see ``dropped_fraction``).
- **mean weight**: the average weight of e over all rows (with softmax equal to its share of the routing).
- **load CV**: standard deviation / mean of the loads; 0 = perfectly balanced.
- **MaxVio** (max violation, from the DeepSeek-V3 / loss-free balancing papers): (max load - mean load) / mean load;
  0 = balanced, E - 1 = one expert takes everything. Global, or the mean over batches.
- **Gini** of the loads: 0 = equal, (E - 1) / E = one expert takes everything.
- **routing entropy**: per row, the entropy of the weights normalised to sum 1, divided by log E, averaged over rows:
  0 = every row goes to one expert, 1 = every row is split evenly.
- **NMI / ARI** between each row's winning expert and its known regime (0 = unrelated, 1 = the same partition up to
  renaming the experts); **mutual information** in nats.
- **dropped fraction**: rows whose weights are all zero (Switch capacity overflow, expert choice left them out).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from kamoe_viz.labels import ROUTING_METRIC_LABELS

ROUTING_METRIC_DEFINITIONS = {
    "nmi": "Normalised mutual information between each row's winning expert and its true regime: 0 = unrelated, "
    "1 = each expert takes exactly one regime.",
    "ari": "Adjusted Rand index between winning expert and true regime: 0 = chance, 1 = identical partitions.",
    "mutual_information": "Mutual information between winning expert and true regime, in nats.",
    "load_cv": "Coefficient of variation of the loads (top-1 shares): 0 = perfectly balanced.",
    "max_violation": "MaxVio = (max load - mean load) / mean load: 0 = balanced, E - 1 = one expert takes all.",
    "max_violation_batch": "MaxVio computed per training-size batch of rows, then averaged.",
    "gini": "Gini coefficient of the loads: 0 = equal, (E - 1)/E = one expert takes everything.",
    "min_load": "The smallest expert's top-1 share; near 0 means a dead expert.",
    "max_load": "The largest expert's top-1 share; near 1 means routing collapsed onto one expert.",
    "routing_entropy": "Mean over rows of the entropy of the row's weights (normalised to sum 1) / log E: "
    "0 = every row goes to one expert, 1 = every row is split evenly.",
    "dropped_fraction": "Share of rows that no expert took (capacity overflow or expert choice).",
}


def flat_weights(weights: ArrayLike) -> np.ndarray:
    """(rows, E) float64 from (rows, E) or (rows, T, E)."""
    w = np.asarray(weights, dtype=np.float64)
    if w.ndim == 1:
        w = w[:, None]
    if w.ndim > 2:
        w = w.reshape(-1, w.shape[-1])
    return w


def routed_rows(weights: ArrayLike) -> np.ndarray:
    """Boolean mask of rows that at least one expert took (some weight > 0)."""
    w = flat_weights(weights)
    return np.asarray((w > 0).any(axis=1))


def winners(weights: ArrayLike) -> np.ndarray:
    """Each row's winning expert (largest weight); -1 for a row that no expert took."""
    w = flat_weights(weights)
    win = w.argmax(axis=1)
    return np.where(routed_rows(w), win, -1)


def expert_load(weights: ArrayLike) -> np.ndarray:
    """Top-1 share of each expert over the routed rows; sums to 1 (zeros if no row was routed)."""
    w = flat_weights(weights)
    win = winners(w)
    win = win[win >= 0]
    counts = np.bincount(win, minlength=w.shape[1]).astype(np.float64)
    return counts / counts.sum() if counts.sum() > 0 else counts


def mean_weight(weights: ArrayLike) -> np.ndarray:
    return flat_weights(weights).mean(axis=0)


def load_cv(load: np.ndarray) -> float:
    load = np.asarray(load, dtype=np.float64)
    mean = load.mean() if load.size else 0.0
    return float(load.std() / mean) if mean > 0 else float("nan")


def max_violation(load: np.ndarray) -> float:
    load = np.asarray(load, dtype=np.float64)
    mean = load.mean() if load.size else 0.0
    return float((load.max() - mean) / mean) if mean > 0 else float("nan")


def max_violation_per_batch(weights: ArrayLike, batch_size: int) -> float:
    """Mean of MaxVio over consecutive batches of ``batch_size`` rows (a short last batch counts too)."""
    w = flat_weights(weights)
    if batch_size < 1 or len(w) == 0:
        return float("nan")
    values = [max_violation(expert_load(w[i : i + batch_size])) for i in range(0, len(w), batch_size)]
    values = [v for v in values if math.isfinite(v)]
    return float(np.mean(values)) if values else float("nan")


def gini(load: np.ndarray) -> float:
    """Gini coefficient of non-negative values (0 = equal)."""
    x = np.sort(np.asarray(load, dtype=np.float64))
    n = x.size
    if n == 0 or x.sum() <= 0:
        return float("nan")
    index = np.arange(1, n + 1)
    return float((2 * index - n - 1).dot(x) / (n * x.sum()))


def row_entropy(weights: ArrayLike) -> np.ndarray:
    """Normalised entropy (0..1) of each row's weights normalised to sum 1; 0 for rows no expert took; NaN with a
    single expert (there is no routing to measure)."""
    w = np.clip(flat_weights(weights), 0.0, None)
    e = w.shape[1]
    if e < 2:
        return np.full(len(w), np.nan)
    total = w.sum(axis=1, keepdims=True)
    p = w / np.where(total > 0, total, 1.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        ent = -np.where(p > 0, p * np.log(p), 0.0).sum(axis=1)
    return ent / math.log(e)


def routing_entropy(weights: ArrayLike) -> float:
    ent = row_entropy(weights)
    return float(ent.mean()) if ent.size else float("nan")


def _regime_pairs(weights: ArrayLike, regimes: ArrayLike | None) -> tuple[np.ndarray, np.ndarray] | None:
    if regimes is None:
        return None
    w = flat_weights(weights)
    r = np.asarray(regimes).reshape(-1)
    if r.size != len(w):
        raise ValueError(f"regimes has {r.size} labels but weights have {len(w)} rows")
    win = winners(w)
    keep = (r >= 0) & (win >= 0)
    if keep.sum() < 2 or len(np.unique(r[keep])) < 2:
        return None
    return r[keep].astype(np.int64), win[keep]


def regime_nmi(weights: ArrayLike, regimes: ArrayLike | None) -> float:
    """NMI (arithmetic normalisation, as scikit-learn's default) between winning expert and true regime; NaN when
    the regimes are unknown or fewer than two are present. Computed from the contingency table in numpy (equal to
    scikit-learn's ``normalized_mutual_info_score``, a tenth of its time: the training timeline calls it per epoch)."""
    pairs = _regime_pairs(weights, regimes)
    if pairs is None:
        return float("nan")
    _, a = np.unique(pairs[0], return_inverse=True)
    _, b = np.unique(pairs[1], return_inverse=True)
    n_b = int(b.max()) + 1
    joint = np.bincount(a * n_b + b, minlength=(int(a.max()) + 1) * n_b).reshape(-1, n_b) / len(a)
    pa, pb = joint.sum(axis=1), joint.sum(axis=0)
    nz = joint > 0
    mi = max(0.0, float(np.sum(joint[nz] * np.log(joint[nz] / np.outer(pa, pb)[nz]))))
    if mi == 0.0:  # regimes are >= 2 here, so a zero MI is no match (scikit-learn's special case)
        return 0.0
    h_a, h_b = (float(-np.sum(p[p > 0] * np.log(p[p > 0]))) for p in (pa, pb))
    return mi / max((h_a + h_b) / 2, np.finfo(np.float64).eps)


def regime_ari(weights: ArrayLike, regimes: ArrayLike | None) -> float:
    from sklearn.metrics import adjusted_rand_score

    pairs = _regime_pairs(weights, regimes)
    return float(adjusted_rand_score(*pairs)) if pairs is not None else float("nan")


def regime_mutual_information(weights: ArrayLike, regimes: ArrayLike | None) -> float:
    from sklearn.metrics import mutual_info_score

    pairs = _regime_pairs(weights, regimes)
    return float(mutual_info_score(*pairs)) if pairs is not None else float("nan")


def dropped_fraction(weights: ArrayLike) -> float:
    w = flat_weights(weights)
    return float(1.0 - routed_rows(w).mean()) if len(w) else float("nan")


def routing_summary(
    weights: ArrayLike, regimes: ArrayLike | None = None, batch_size: int | None = None
) -> dict[str, Any]:
    """Every routing metric of one set of gate weights, under the keys ``train --json`` and Compare use:
    ``load`` (list of top-1 shares, summing to 1), ``mean_weight`` (list), ``load_cv``, ``max_violation``,
    ``gini``, ``min_load``, ``max_load``, ``routing_entropy``, ``dropped_fraction``, and ``nmi``, ``ari``,
    ``mutual_information`` when regimes are known (NaN otherwise); ``max_violation_batch`` with a batch size."""
    w = flat_weights(weights)
    load = expert_load(w)
    summary: dict[str, Any] = {
        "load": [float(v) for v in load],
        "mean_weight": [float(v) for v in mean_weight(w)],
        "load_cv": load_cv(load),
        "max_violation": max_violation(load),
        "gini": gini(load),
        "min_load": float(load.min()) if load.size else float("nan"),
        "max_load": float(load.max()) if load.size else float("nan"),
        "routing_entropy": routing_entropy(w),
        "dropped_fraction": dropped_fraction(w),
        "nmi": regime_nmi(w, regimes),
        "ari": regime_ari(w, regimes),
        "mutual_information": regime_mutual_information(w, regimes),
    }
    if batch_size is not None:
        summary["max_violation_batch"] = max_violation_per_batch(w, batch_size)
    return summary


ROUTING_TABLE_KEYS = (
    "nmi",
    "ari",
    "mutual_information",
    "load_cv",
    "max_violation",
    "max_violation_batch",
    "gini",
    "min_load",
    "max_load",
    "routing_entropy",
    "dropped_fraction",
)


def routing_metrics_table(summary: dict[str, Any]) -> Any:
    """One row per scalar metric of a :func:`routing_summary`: label, value, definition (NaN values, e.g. NMI
    without known regimes, are left out)."""
    import pandas as pd

    rows = [
        {
            "metric": ROUTING_METRIC_LABELS[key],
            "value": float(summary[key]),
            "definition": ROUTING_METRIC_DEFINITIONS[key],
        }
        for key in ROUTING_TABLE_KEYS
        if key in summary and math.isfinite(float(summary[key]))
    ]
    return pd.DataFrame(rows, columns=["metric", "value", "definition"])


__all__ = [
    "ROUTING_METRIC_DEFINITIONS",
    "ROUTING_TABLE_KEYS",
    "dropped_fraction",
    "expert_load",
    "flat_weights",
    "gini",
    "load_cv",
    "max_violation",
    "max_violation_per_batch",
    "mean_weight",
    "regime_ari",
    "regime_mutual_information",
    "regime_nmi",
    "routed_rows",
    "routing_entropy",
    "routing_metrics_table",
    "routing_summary",
    "row_entropy",
    "winners",
]
