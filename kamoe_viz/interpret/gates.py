"""How the gate routes: weight distributions, load and utilisation, entropy, region maps, time, partial dependence.

Definitions (shown in the app next to the numbers):

- **mean weight**: the average gate weight of an expert over the rows.
- **top-1 share**: fraction of rows where the expert has the largest weight (it "wins" the row).
- **normalised share**: mean weight / sum of all experts' mean weights. With softmax the weights of a row sum to 1,
  so this equals the mean weight: the expert's share of the routing. With sigmoid each weight is an independent
  number in (0, 1), so mean weight and share differ and both are reported.
- **routing entropy**: per row, entropy of the weights normalised to sum 1, divided by log(E): 0 = one expert
  takes the whole row, 1 = all experts weigh the same. Reported as the mean over rows.
- **dead expert**: wins (almost) no row (top-1 share < 1%) and carries a tiny share (< 0.1 / E).
- **always-on expert**: wins at least 99% of the rows, or (sigmoid) its weight is above 0.9 on 95% of them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from kamoe_viz.errors import ValidationError
from kamoe_viz.interpret._common import (
    DEFAULT_REFERENCE_ROWS,
    expert_names,
    feature_names,
    flatten_time,
    gate_weights_numpy,
    raw_to_scaled,
    reference_set,
    rows_of,
)
from kamoe_viz.routing_metrics import row_entropy

if TYPE_CHECKING:
    from kamoe_viz.config import TrainConfig
    from kamoe_viz.data.base import Dataset
    from kamoe_viz.nn.moe import KAMoE

DEAD_TOP1 = 0.01
DEAD_SHARE_FACTOR = 0.1
ALWAYS_ON_TOP1 = 0.99
LOAD_DEFINITIONS = {
    "softmax": "Softmax gate: each row's weights sum to 1, so an expert's mean weight is its share of the routing "
    "(load). Top-1 share = fraction of rows where the expert has the largest weight.",
    "sigmoid": "Sigmoid gate: each weight is an independent number in (0, 1) and a row's weights need not sum to "
    "1. Shown: mean weight, normalised share (mean weight / sum of mean weights) and top-1 share "
    "(fraction of rows where the expert has the largest weight).",
}
ENTROPY_DEFINITION = (
    "Routing entropy: entropy of each row's weights (normalised to sum 1) divided by log(number of "
    "experts), averaged over rows. 0 = every row goes to one expert, 1 = every row is split evenly."
)


def _activation(model: KAMoE) -> str:
    return "sigmoid" if model.gate is None else model.config.gate_activation


def gate_weights_frame(
    model: KAMoE, dataset: Dataset, split: str = "train", max_rows: int | None = DEFAULT_REFERENCE_ROWS
) -> pd.DataFrame:
    """Wide frame: one row per input (per time step for sequence gates) with each expert's weight, the winner,
    the winning weight and the true regime where known."""
    X, _, regimes, idx = reference_set(dataset, split, max_rows)
    weights = gate_weights_numpy(model, X)
    steps = weights.shape[1] if weights.ndim == 3 else 1
    flat = flatten_time(weights, 1)
    names = expert_names(flat.shape[1])
    frame = pd.DataFrame(flat, columns=names)
    frame.insert(0, "row", np.repeat(idx, steps))
    if steps > 1:
        frame.insert(1, "step", np.tile(np.arange(steps), len(idx)))
    frame["winner"] = flat.argmax(axis=1)
    frame["winning_weight"] = flat.max(axis=1)
    reg = rows_of(regimes, len(flat))
    if reg is not None:
        frame["regime"] = reg
    return frame


def weights_long(wide: pd.DataFrame) -> pd.DataFrame:
    """(row, expert, weight) from :func:`gate_weights_frame`."""
    names = [c for c in wide.columns if c.startswith("expert ")]
    return wide.melt(id_vars=["row"], value_vars=names, var_name="expert", value_name="weight")


def load_table(weights: np.ndarray, activation: str) -> pd.DataFrame:
    """Per expert: mean weight, normalised share, top-1 share, weight quantiles, and dead/always-on flags."""
    if activation not in ("sigmoid", "softmax"):
        raise ValidationError("activation", activation, "must be sigmoid or softmax")
    w = flatten_time(np.asarray(weights, dtype=np.float64), 1)
    n, e = w.shape
    mean = w.mean(axis=0)
    total = mean.sum()
    share = mean / total if total > 0 else np.full(e, 1.0 / e)
    top1 = np.bincount(w.argmax(axis=1), minlength=e) / max(n, 1)
    q05, q50, q95 = np.quantile(w, [0.05, 0.5, 0.95], axis=0)
    dead = (top1 < DEAD_TOP1) & (share < DEAD_SHARE_FACTOR / e) if e > 1 else np.zeros(e, bool)
    always = (top1 >= ALWAYS_ON_TOP1) if e > 1 else np.ones(e, bool)
    if activation == "sigmoid":
        always = always | (q05 > 0.9)
    status = np.where(dead, "dead", np.where(always, "always on", "active"))
    return pd.DataFrame(
        {
            "expert": expert_names(e),
            "mean_weight": mean,
            "normalised_share": share,
            "top1_share": top1,
            "weight_p05": q05,
            "weight_median": q50,
            "weight_p95": q95,
            "dead": dead,
            "always_on": always,
            "status": status,
        }
    )


def routing_entropy(weights: np.ndarray) -> np.ndarray:
    """Normalised entropy (0..1) of each row's weights, normalised to sum 1 (:mod:`kamoe_viz.routing_metrics`)."""
    return row_entropy(flatten_time(np.asarray(weights, dtype=np.float64), 1))


def gate_summary(
    model: KAMoE, dataset: Dataset, split: str = "train", max_rows: int | None = DEFAULT_REFERENCE_ROWS
) -> dict[str, Any]:
    """Headline numbers: activation, mean routing entropy, entropy of the load (balance), flagged experts."""
    wide = gate_weights_frame(model, dataset, split, max_rows)
    w = wide[[c for c in wide.columns if c.startswith("expert ")]].to_numpy()
    act = _activation(model)
    loads = load_table(w, act)
    share = loads["normalised_share"].to_numpy()
    e = len(share)
    balance = float(-(share[share > 0] * np.log(share[share > 0])).sum() / np.log(e)) if e > 1 else 0.0
    return {
        "activation": act,
        "n_experts": e,
        "rows": len(w),
        "mean_routing_entropy": float(routing_entropy(w).mean()),
        "load_balance_entropy": balance,
        "dead": [str(x) for x in loads.loc[loads["dead"], "expert"]],
        "always_on": [str(x) for x in loads.loc[loads["always_on"], "expert"]],
        "load_definition": LOAD_DEFINITIONS[act],
        "entropy_definition": ENTROPY_DEFINITION,
    }


def region_grid(
    dataset: Dataset, features: tuple[int, int] = (0, 1), resolution: int = 60, margin: float = 0.05
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The cells of a region map: (model inputs (cells, F) float32, x axis, y axis in raw units). The features
    not on the axes are held at their training mean (a slice when there are more than two)."""
    if dataset.is_sequence:
        raise ValidationError("dataset", dataset.name, "region maps need tabular data (not sequence windows)")
    f0, f1 = int(features[0]), int(features[1])
    nf = dataset.n_features
    if not (0 <= f0 < nf and 0 <= f1 < nf) or f0 == f1:
        raise ValidationError("features", features, f"must be two different feature indices below {nf}")
    if not 5 <= resolution <= 400:
        raise ValidationError("resolution", resolution, "must be from 5 to 400 cells per axis")
    raw = dataset.unscale_X(dataset.X_train)
    axes = []
    for f in (f0, f1):
        lo, hi = float(raw[:, f].min()), float(raw[:, f].max())
        pad = margin * (hi - lo if hi > lo else 1.0)
        axes.append(np.linspace(lo - pad, hi + pad, resolution))
    gx, gy = np.meshgrid(axes[0], axes[1])
    cells = np.empty((gx.size, nf))
    cells[:] = raw_to_scaled(dataset, raw.mean(axis=0, keepdims=True))[0]
    cells[:, f0] = raw_to_scaled(dataset, gx.ravel(), [f0])
    cells[:, f1] = raw_to_scaled(dataset, gy.ravel(), [f1])
    return cells.astype(np.float32), axes[0], axes[1]


def region_frame(
    weights: np.ndarray, x_axis: np.ndarray, y_axis: np.ndarray, x_name: str = "x", y_name: str = "y"
) -> pd.DataFrame:
    """The long frame of :func:`region_map` from gate weights (cells, E) on the cells of :func:`region_grid`."""
    gx, gy = np.meshgrid(x_axis, y_axis)
    e = weights.shape[1]
    names = expert_names(e)
    frame = pd.DataFrame(
        {
            "x": np.repeat(gx.ravel(), e),
            "y": np.repeat(gy.ravel(), e),
            "expert": np.tile(names, gx.size),
            "weight": weights.ravel(),
        }
    )
    frame["winner"] = np.repeat(np.asarray(names, dtype=object)[weights.argmax(axis=1)], e)
    frame["winning_weight"] = np.repeat(weights.max(axis=1), e)
    frame.attrs.update(
        {
            "x_name": x_name,
            "y_name": y_name,
            "step_x": float(x_axis[1] - x_axis[0]) if len(x_axis) > 1 else 1.0,
            "step_y": float(y_axis[1] - y_axis[0]) if len(y_axis) > 1 else 1.0,
        }
    )
    return frame


def region_map(
    model: KAMoE, dataset: Dataset, features: tuple[int, int] = (0, 1), resolution: int = 60, margin: float = 0.05
) -> pd.DataFrame:
    """Gate weights on a grid over the plane of two features, in the data's original units.

    For 2-D data this is the whole input space; with more features the others are held at their training mean
    (a slice). Long frame: x, y (raw units), expert, weight, plus winner and winning_weight per grid cell.
    """
    cells, x_axis, y_axis = region_grid(dataset, features, resolution, margin)
    weights = gate_weights_numpy(model, cells)
    feats = feature_names(dataset)
    return region_frame(weights, x_axis, y_axis, feats[int(features[0])], feats[int(features[1])])


def region_points(
    model: KAMoE, dataset: Dataset, features: tuple[int, int] = (0, 1), split: str = "train", max_rows: int = 1500
) -> pd.DataFrame:
    """The data on top of a region map: raw x, y, winning expert, target and regime where known."""
    X, y, regimes, idx = reference_set(dataset, split, max_rows)
    weights = gate_weights_numpy(model, X)
    raw = dataset.unscale_X(X)
    names = np.asarray(expert_names(weights.shape[1]), dtype=object)
    frame = pd.DataFrame(
        {
            "row": idx,
            "x": raw[:, features[0]],
            "y": raw[:, features[1]],
            "winner": names[weights.argmax(axis=1)],
            "winning_weight": weights.max(axis=1),
        }
    )
    if dataset.task == "classification":
        labels = np.asarray(y).reshape(-1)
        classes = dataset.class_names or [str(c) for c in range(dataset.n_outputs)]
        frame["target"] = [classes[int(v)] for v in labels]
    else:
        frame["target"] = dataset.unscale_y(np.asarray(y, dtype=np.float64)).reshape(len(X), -1)[:, -1]
    if regimes is not None:
        frame["regime"] = _regime_labels(dataset, regimes)
    return frame


def _regime_labels(dataset: Dataset, regimes: np.ndarray) -> list[str]:
    names = dataset.regime_names
    out = []
    for r in np.asarray(regimes).reshape(-1):
        r = int(r)
        out.append("unknown" if r < 0 else (names[r] if names and r < len(names) else f"regime {r}"))
    return out


def gates_over_time(model: KAMoE, dataset: Dataset, split: str = "test", max_steps: int = 1500) -> pd.DataFrame:
    """Sequence data: each expert's gate weight per window, in the split's order, with the true regime.

    ``t`` is the window's position in the split (windows are in time order within a split); for gates that
    return a weight per time step, the last step's weight is used. Long frame: t, expert, weight, regime.
    """
    if not dataset.is_sequence:
        raise ValidationError("dataset", dataset.name, "gates over time need a sequence dataset")
    X, _, regimes = dataset.split(split)
    n = min(len(X), max_steps)
    weights = gate_weights_numpy(model, X[:n])
    if weights.ndim == 3:
        weights = weights[:, -1]
    e = weights.shape[1]
    frame = pd.DataFrame(
        {"t": np.repeat(np.arange(n), e), "expert": np.tile(expert_names(e), n), "weight": weights.ravel()}
    )
    if regimes is not None:
        reg = np.asarray(regimes)[:n]
        reg = reg[:, -1] if reg.ndim == 2 else reg
        frame["regime"] = np.repeat(_regime_labels(dataset, reg), e)
    return frame


def partial_dependence(
    model: KAMoE,
    dataset: Dataset,
    n_values: int = 20,
    max_rows: int = 300,
    quantiles: tuple[float, float] = (0.02, 0.98),
) -> pd.DataFrame:
    """Mean gate weight of each expert as one feature is set to each of ``n_values`` values (between the given
    training quantiles) on a reference subsample, all other features as they are (classic partial dependence).

    For sequence windows the feature is set at every time step. Long frame: feature, value (raw units),
    expert, weight.
    """
    X, _, _, _ = reference_set(dataset, "train", max_rows, seed=2)
    feats = feature_names(dataset)
    raw_train = dataset.unscale_X(dataset.X_train.reshape(-1, dataset.n_features))
    frames = []
    for f, name in enumerate(feats):
        lo, hi = np.quantile(raw_train[:, f], quantiles)
        values = np.unique(np.linspace(lo, hi, n_values)) if hi > lo else np.array([lo])
        scaled = raw_to_scaled(dataset, values, [f])
        batch = np.repeat(X[None], len(values), axis=0)  # (V, N, ...)
        batch[..., f] = scaled.reshape((-1,) + (1,) * (batch.ndim - 2))
        weights = gate_weights_numpy(model, batch.reshape((-1,) + X.shape[1:]))
        weights = flatten_time(weights, 1) if weights.ndim == 3 else weights
        mean = weights.reshape(len(values), -1, weights.shape[-1]).mean(axis=1)  # (V, E)
        e = mean.shape[1]
        frames.append(
            pd.DataFrame(
                {
                    "feature": name,
                    "value": np.repeat(values, e),
                    "expert": np.tile(expert_names(e), len(values)),
                    "weight": mean.ravel(),
                }
            )
        )
    return pd.concat(frames, ignore_index=True)


__all__ = [
    "ENTROPY_DEFINITION",
    "LOAD_DEFINITIONS",
    "gate_summary",
    "gate_weights_frame",
    "gates_over_time",
    "load_table",
    "partial_dependence",
    "region_frame",
    "region_grid",
    "region_map",
    "region_points",
    "routing_entropy",
    "weights_long",
]


SPECIALISED_NMI = 0.8  # NMI against the true regimes from which a run counts as specialised (presets, hints)


def specialisation_hint(nmi: float, train: TrainConfig) -> str | None:
    """What to try when a run's experts do not each take a regime (``nmi`` < SPECIALISED_NMI; NaN: no known
    regimes, no hint). The advice follows what was measured on ``regimes`` (scripts/specialisation_findings.md)."""
    if not np.isfinite(nmi) or nmi >= SPECIALISED_NMI:
        return None
    shared = (
        f"The experts share the regimes (NMI {nmi:.2f} against the true regimes; {SPECIALISED_NMI:g} or more "
        "means each expert takes one)."
    )
    if train.objective == "mse":
        return (
            f"{shared} This run was trained on the MSE of the mixed prediction, which does not reward sending "
            "a row to the expert that predicts it best. Train on the mixture likelihood (Objective: "
            "likelihood, with a faster gate) as the Three regimes preset does, or open the MSE objective "
            "preset to compare the two."
        )
    if train.restarts <= 1:
        return (
            f"{shared} With the likelihood objective this usually means a regime boundary settled in the wrong "
            "place for this initialisation: try restarts (e.g. 8 restarts of 40 epochs, as the Three regimes "
            "preset does) or another seed."
        )
    return f"{shared} Try another seed, more restarts, or a longer training."
