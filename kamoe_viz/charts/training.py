"""Charts for the Train page: live loss curves, gate-weight distribution, expert load over time, data preview.

Pure functions: tidy pandas DataFrames in, ``alt.Chart`` out (plus the small helpers that build those frames
from training records and datasets). No Streamlit, no torch.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import altair as alt
import numpy as np
import pandas as pd

from kamoe_viz.charts.theme import CLASS_SCHEME, SPLIT_COLORS, expert_color, expert_scale, layered

# One sentence per output activation, shown next to the load numbers: how "load" is defined for each.
LOAD_DEFINITIONS = {
    "softmax": "Softmax weights sum to 1 for every input, so an expert's load is its mean gate weight "
    "(the share of the mixture it carries).",
    "sigmoid": "Sigmoid weights are independent numbers in (0, 1) and need not sum to 1, so an expert's load is "
    "its mean weight divided by the sum of all experts' mean weights (its share of the total weight).",
}
TOP_K_NOTE = (
    "With top-k routing, the weights of experts outside an input's k largest are set to 0 before the load "
    "is computed, so an expert that is never picked has load 0."
)


# ----- frames ---------------------------------------------------------------------------------------------------
def history_frame(records: Iterable[Any]) -> pd.DataFrame:
    """Long frame (epoch, split, loss) from EpochInfo-like records or a history DataFrame."""
    if isinstance(records, pd.DataFrame):
        wide = records
    else:
        rows = [
            {"epoch": int(r.epoch), "train_loss": float(r.train_loss), "val_loss": float(r.val_loss)} for r in records
        ]
        wide = pd.DataFrame(rows, columns=["epoch", "train_loss", "val_loss"])
    long = wide.melt(id_vars="epoch", value_vars=["train_loss", "val_loss"], var_name="split", value_name="loss")
    long["split"] = long["split"].map({"train_loss": "train", "val_loss": "validation"})
    long = long[np.isfinite(long["loss"].astype(float))]
    return long.reset_index(drop=True)


def gate_weight_frame(gate_weights: np.ndarray, expert_names: Sequence[str] | None = None) -> pd.DataFrame:
    """Tidy (row, expert, weight) from a (n, E) or (n, T, E) array of gate weights."""
    weights = np.asarray(gate_weights, dtype=float)
    if weights.ndim == 3:  # sequences: every time step is one observation
        weights = weights.reshape(-1, weights.shape[-1])
    if weights.ndim != 2:
        raise ValueError(f"gate_weights must be (n, E) or (n, T, E), got shape {weights.shape}")
    n, e = weights.shape
    names = list(expert_names) if expert_names is not None else [f"expert {i}" for i in range(e)]
    return pd.DataFrame(
        {
            "row": np.repeat(np.arange(n), e),
            "expert": np.tile(np.asarray(names, dtype=object), n),
            "weight": weights.reshape(-1),
        }
    )


def expert_load(gate_weights: np.ndarray, activation: str) -> np.ndarray:
    """Load of each expert as defined in :data:`LOAD_DEFINITIONS` (sums to 1 over experts)."""
    weights = np.asarray(gate_weights, dtype=float)
    weights = weights.reshape(-1, weights.shape[-1])
    mean = weights.mean(axis=0)
    if activation == "softmax":
        total = mean.sum()
        return mean / total if total > 0 else mean
    total = mean.sum()
    return mean / total if total > 0 else np.full_like(mean, 1.0 / len(mean))


def load_history_frame(records: Iterable[Any], activation: str) -> pd.DataFrame:
    """Long frame (epoch, expert, load) from EpochInfo-like records that carry ``gate_weights``."""
    rows = []
    for r in records:
        weights = getattr(r, "gate_weights", None)
        if weights is None or np.asarray(weights).size == 0:
            continue
        for i, value in enumerate(expert_load(weights, activation)):
            rows.append({"epoch": int(r.epoch), "expert": f"expert {i}", "load": float(value)})
    return pd.DataFrame(rows, columns=["epoch", "expert", "load"])


def preview_frame(
    X: np.ndarray,
    y: np.ndarray,
    feature_names: Sequence[str],
    target_name: str,
    class_names: Sequence[str] | None = None,
    regimes: np.ndarray | None = None,
    regime_names: Sequence[str] | None = None,
    limit: int = 200,
) -> pd.DataFrame:
    """Rows of a split for display: features (last time step for windows), target, regime when known."""
    X = np.asarray(X)[:limit]
    y = np.asarray(y)[:limit]
    if X.ndim == 3:
        X = X[:, -1, :]
    frame = pd.DataFrame(X, columns=list(feature_names))
    target = y.reshape(len(y), -1)[:, -1] if y.ndim > 1 else y
    if class_names is not None:
        frame[target_name] = [class_names[int(v)] if 0 <= int(v) < len(class_names) else str(v) for v in target]
    else:
        frame[target_name] = target.astype(float)
    if regimes is not None:
        reg = np.asarray(regimes)[:limit]
        if reg.ndim > 1:
            reg = reg[:, -1]
        names = list(regime_names) if regime_names else None
        frame["regime"] = [names[int(v)] if names and 0 <= int(v) < len(names) else str(int(v)) for v in reg]
    return frame


# ----- charts ---------------------------------------------------------------------------------------------------
def loss_chart(
    history: pd.DataFrame, best_epoch: int | None = None, log_scale: bool = True, height: int = 240
) -> alt.Chart:
    """Train and validation loss per epoch (long frame from :func:`history_frame`); a rule marks the best epoch."""
    positive = bool(len(history)) and bool((history["loss"] > 0).all())
    y_scale = alt.Scale(type="log", nice=False, padding=8) if (log_scale and positive) else alt.Scale(zero=False)
    color = alt.Color(
        "split:N",
        title=None,
        scale=alt.Scale(domain=list(SPLIT_COLORS), range=list(SPLIT_COLORS.values())),
        legend=alt.Legend(orient="top", direction="vertical"),
    )  # one per line: fits a narrow column
    base = alt.Chart(history).encode(
        x=alt.X("epoch:Q", title="epoch", axis=alt.Axis(tickMinStep=1)),
        y=alt.Y("loss:Q", title="loss" + (" (log scale)" if log_scale and positive else ""), scale=y_scale),
        color=color,
        tooltip=["epoch:Q", "split:N", alt.Tooltip("loss:Q", format=".4g")],
    )
    chart = base.mark_line(point=len(history) <= 60, strokeWidth=2)
    frames = loss_data(history, best_epoch)
    if len(frames) > 1:
        marker = alt.Chart(frames[1])
        rule = marker.mark_rule(strokeDash=[4, 4], color="gray").encode(x="epoch:Q", tooltip=["label:N"])
        on_left = _label_on_left(history, best_epoch)  # in the right half the text goes left of the line, inside
        label = marker.mark_text(
            align="right" if on_left else "left",
            baseline="top",
            dx=-4 if on_left else 4,
            dy=4,
            color="gray",
            fontSize=11,
        ).encode(x="epoch:Q", y=alt.value(0), text="label:N")  # the line says what it is, without hovering
        chart = layered(chart, rule, label)
    return chart.properties(height=height, title="Loss")


def _label_on_left(history: pd.DataFrame, best_epoch: int | None) -> bool:
    """Whether the best-epoch label goes left of its line (the line is in the right half of the epochs)."""
    if best_epoch is None or not len(history):
        return False
    low, high = float(history["epoch"].min()), float(history["epoch"].max())
    return best_epoch > (low + high) / 2


def loss_data(history: pd.DataFrame, best_epoch: int | None = None, **_: Any) -> list[pd.DataFrame]:
    """The frames of :func:`loss_chart` in the order :func:`kamoe_viz.charts.export.frames_spec` names them."""
    marker = pd.DataFrame({"epoch": [best_epoch], "label": [f"best epoch {best_epoch}"]})
    return [history, marker] if best_epoch is not None and len(history) else [history]


def loss_shape(
    history: pd.DataFrame, best_epoch: int | None = None, log_scale: bool = True, height: int = 240
) -> tuple[Any, ...]:
    """What in :func:`loss_chart` is fixed apart from its frames."""
    positive = bool(len(history)) and bool((history["loss"] > 0).all())
    marked = best_epoch is not None and bool(len(history))
    return positive, len(history) <= 60, marked, _label_on_left(history, best_epoch), log_scale, height


def chart_height(kind: str, n_experts: int = 1) -> int:
    """Total pixel height to give a chart from this module when it is embedded (title, legend and axes included)."""
    if kind == "gates":
        return 90 + 95 * max(1, n_experts)
    return {"loss": 320, "load": 300, "scatter": 380}.get(kind, 300)


def gate_distribution_chart(frame: pd.DataFrame, height: int = 240, bins: int = 20) -> alt.Chart:
    """Histogram of gate weights per expert (tidy frame from :func:`gate_weight_frame`), weights on [0, 1]."""
    n_experts = int(frame["expert"].nunique()) if len(frame) else 1
    return (
        alt.Chart(frame)
        .mark_bar(opacity=0.85)
        .encode(
            x=alt.X(
                "weight:Q",
                bin=alt.Bin(extent=[0, 1], maxbins=bins),
                title="gate weight",
                scale=alt.Scale(domain=[0, 1]),
            ),
            y=alt.Y("count():Q", title="inputs"),
            color=expert_color("expert", list(frame["expert"].unique()), legend=False),
            # expert names above each row (not beside it), so the chart fits a narrow column
            row=alt.Row(
                "expert:N", title=None, header=alt.Header(labelOrient="top", labelAnchor="start", labelPadding=2)
            ),
            tooltip=["expert:N", alt.Tooltip("count():Q", title="inputs")],
        )
        .properties(height=max(30, height // max(1, n_experts)), width=160, title="Gate weights on validation inputs")
    )


def load_chart(frame: pd.DataFrame, height: int = 240) -> alt.Chart:
    """Each expert's load per epoch (frame from :func:`load_history_frame`), stacked to 1."""
    return (
        alt.Chart(frame)
        .mark_area(opacity=0.85)
        .encode(
            x=alt.X("epoch:Q", title="epoch", axis=alt.Axis(tickMinStep=1)),
            y=alt.Y("load:Q", title="load (share)", stack="normalize", axis=alt.Axis(format="%")),
            # legend below, one expert per line: beside the plot it ate a narrow column's whole width (the area
            # vanished at 1000 px), in one row on top several experts overflowed it
            color=alt.Color(
                "expert:N",
                scale=expert_scale(list(frame["expert"].unique())),
                legend=alt.Legend(orient="bottom", columns=1, title=None),
            ),
            tooltip=["epoch:Q", "expert:N", alt.Tooltip("load:Q", format=".1%")],
        )
        .properties(height=height, title="Expert load over training")
    )


def scatter_2d_chart(frame: pd.DataFrame, x: str, y: str, color: str, nominal: bool, height: int = 320) -> alt.Chart:
    """Scatter of a 2-D dataset's inputs, coloured by class / regime (nominal) or by target value."""
    encoding = (
        alt.Color(f"{color}:N", scale=alt.Scale(scheme=CLASS_SCHEME))
        if nominal
        else alt.Color(f"{color}:Q", scale=alt.Scale(scheme="viridis"))
    )
    return (
        alt.Chart(frame)
        .mark_circle(size=22, opacity=0.75)
        .encode(
            x=alt.X(f"{x}:Q", scale=alt.Scale(zero=False)),
            y=alt.Y(f"{y}:Q", scale=alt.Scale(zero=False)),
            color=encoding,
            tooltip=[alt.Tooltip(f"{x}:Q", format=".3g"), alt.Tooltip(f"{y}:Q", format=".3g"), f"{color}"],
        )
        .properties(height=height)
    )
