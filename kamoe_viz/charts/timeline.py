"""Charts of a training timeline: the Playground views (region map beside the prediction map, load bars, weight
histograms) for one snapshot, and the whole story (load per expert over epochs, NMI and routing entropy over
epochs with the settle epoch marked). Frames come from :class:`kamoe_viz.training.timeline.Timeline`."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import altair as alt
import numpy as np
import pandas as pd

from kamoe_viz.charts.gates import SEAM_STROKE, _cells, region_winner_chart, square_domains, weight_histogram_chart
from kamoe_viz.charts.theme import HEAT_SCHEME, PREDICTED_CLASS_COLORS, expert_color, layered
from kamoe_viz.interpret._common import expert_names, flatten_time
from kamoe_viz.labels import ROUTING_METRIC_LABELS

if TYPE_CHECKING:
    from kamoe_viz.data.base import Dataset

STORY_METRICS = ("nmi", "routing_entropy")


def data_points(dataset: Dataset, max_rows: int = 600) -> pd.DataFrame:
    """Training rows of a 2-D dataset in raw units with their target (class name or value), for the maps."""
    from kamoe_viz.interpret._common import reference_set

    X, y, _, _ = reference_set(dataset, "train", max_rows)
    raw = dataset.unscale_X(X)
    frame = pd.DataFrame({"x": raw[:, 0], "y": raw[:, 1]})
    if dataset.task == "classification":
        classes = dataset.class_names or [str(c) for c in range(dataset.n_outputs)]
        frame["target"] = [classes[int(v)] for v in np.asarray(y).reshape(-1)]
    else:
        frame["target"] = dataset.unscale_y(np.asarray(y, dtype=np.float64)).reshape(len(X), -1)[:, -1]
    return frame


def _points(points: pd.DataFrame, x_title: str, y_title: str, categorical: bool) -> alt.Chart:
    shape = (
        alt.Shape("target:N", title="class", legend=alt.Legend(orient="bottom")) if categorical else alt.value("circle")
    )
    return (
        alt.Chart(points)
        .mark_point(size=20, filled=True, color="#222222", opacity=0.6)
        .encode(
            x=alt.X("x:Q", title=x_title),
            y=alt.Y("y:Q", title=y_title),
            shape=shape,
            tooltip=[
                alt.Tooltip("x:Q", format=".3g"),
                alt.Tooltip("y:Q", format=".3g"),
                alt.Tooltip("target:N" if categorical else "target:Q"),
            ],
        )
    )


def region_map_chart(
    region: pd.DataFrame, points: pd.DataFrame | None, size: int = 260, title: str = "Winning expert"
) -> alt.LayerChart:
    """The plane coloured by the winning expert, opacity = its weight, data on top (Gates page's chart)."""
    x_title, y_title = region.attrs.get("x_name", "x"), region.attrs.get("y_name", "y")
    frames = region_map_data(region, points)
    heat = region_winner_chart(region, None, x_title, y_title, size=size).layer[0]
    heat = heat.properties(data=frames[0])  # the layer's data was lifted to its parent
    layers = [heat]
    if len(frames) > 1:
        layers.append(_points(frames[1], x_title, y_title, frames[1]["target"].dtype == object))
    return layered(*layers).properties(width=size, height=size, title=title)


def _with_points(points: pd.DataFrame | None) -> list[pd.DataFrame]:
    return [points] if points is not None and len(points) else []


def region_map_data(region: pd.DataFrame, points: pd.DataFrame | None, **_: Any) -> list[pd.DataFrame]:
    """The frames of :func:`region_map_chart`, in the order :func:`kamoe_viz.charts.export.frames_spec` names them
    (the live views redraw a kept spec with these)."""
    return [_cells(region.drop_duplicates(["x", "y"])), *_with_points(points)]


def prediction_map_chart(frame: pd.DataFrame, points: pd.DataFrame | None, size: int = 260) -> alt.LayerChart:
    """The model's output over the plane: predicted class (opacity = its probability) or the predicted value."""
    cells = prediction_map_data(frame, points)[0]
    x_title, y_title = frame.attrs.get("x_name", "x"), frame.attrs.get("y_name", "y")
    dx, dy = square_domains(cells)  # the same axes as the region map beside it
    enc = {
        "x": alt.X("x_lo:Q", title=x_title, scale=alt.Scale(domain=dx, nice=False)),
        "x2": "x_hi:Q",
        "y": alt.Y("y_lo:Q", title=y_title, scale=alt.Scale(domain=dy, nice=False)),
        "y2": "y_hi:Q",
    }
    if "predicted" in cells:
        heat = (
            alt.Chart(cells)
            .mark_rect(clip=True, strokeWidth=SEAM_STROKE)
            .encode(
                **enc,
                color=alt.Color(
                    "predicted:N",
                    scale=alt.Scale(range=PREDICTED_CLASS_COLORS),
                    title="predicted class",
                    legend=alt.Legend(orient="top"),
                ),
                stroke=alt.Stroke("predicted:N", scale=alt.Scale(range=PREDICTED_CLASS_COLORS), legend=None),
                opacity=alt.Opacity("probability:Q", scale=alt.Scale(domain=[0.5, 1], range=[0.15, 0.85]), legend=None),
                strokeOpacity=alt.StrokeOpacity(
                    "probability:Q", scale=alt.Scale(domain=[0.5, 1], range=[0.15, 0.85]), legend=None
                ),
                tooltip=[alt.Tooltip("predicted:N"), alt.Tooltip("probability:Q", format=".2f")],
            )
        )
    else:
        heat = (
            alt.Chart(cells)
            .mark_rect(clip=True)
            .encode(
                **enc,
                color=alt.Color(
                    "prediction:Q",
                    scale=alt.Scale(scheme=HEAT_SCHEME),
                    title="prediction",
                    legend=alt.Legend(orient="top"),
                ),
                tooltip=[alt.Tooltip("prediction:Q", format=".3g")],
            )
        )
    layers = [heat]
    if points is not None and len(points):
        layers.append(_points(points, x_title, y_title, "predicted" in cells))
    return layered(*layers).properties(width=size, height=size, title="Prediction")


def prediction_map_data(frame: pd.DataFrame, points: pd.DataFrame | None, **_: Any) -> list[pd.DataFrame]:
    return [_cells(frame), *_with_points(points)]


def weights_long(weights: np.ndarray) -> pd.DataFrame:
    """(expert, weight) rows from gate weights (rows, E) or (rows, T, E)."""
    flat = flatten_time(np.asarray(weights), 1)
    names = expert_names(flat.shape[1])
    return pd.DataFrame({"expert": np.tile(names, len(flat)), "weight": flat.ravel()})


def histogram_chart(weights: np.ndarray) -> alt.Chart:
    """Gate-weight histograms sized for half of the Train page's panel: one expert above the other."""
    n_experts = int(np.shape(weights)[-1])
    return weight_histogram_chart(weights_long(weights), stacked=True).properties(
        width=200, height=max(22, 150 // max(1, n_experts) - 14)
    )


def load_bars_chart(load: list[float], width: int = 260, title: str = "Load per expert") -> alt.LayerChart:
    """Each expert's load (top-1 share) now, as bars with the balanced share 1/E as a rule."""
    names = expert_names(len(load))
    frame, even = load_bars_data(load)
    bars = (
        alt.Chart(frame)
        .mark_bar()
        .encode(
            x=alt.X("expert:N", sort=names, title=None, axis=alt.Axis(labelAngle=0 if len(load) <= 4 else -90)),
            y=alt.Y("load:Q", scale=alt.Scale(domain=[0, 1]), title="load (top-1 share)"),
            color=expert_color("expert", names, legend=False),
            tooltip=[alt.Tooltip("expert:N"), alt.Tooltip("load:Q", format=".2f")],
        )
    )
    rule = alt.Chart(even).mark_rule(strokeDash=[4, 3], color="#555555").encode(y="even:Q")
    return layered(bars, rule).properties(width=width, height=160, title=title)


def load_bars_data(load: list[float], **_: Any) -> list[pd.DataFrame]:
    return [
        pd.DataFrame({"expert": expert_names(len(load)), "load": load}),
        pd.DataFrame({"even": [1.0 / max(1, len(load))]}),
    ]


def histogram_data(weights: np.ndarray, **_: Any) -> list[pd.DataFrame]:
    return [weights_long(weights)]


def sequence_weights_frame(
    weights: np.ndarray, regimes: np.ndarray | None = None, regime_names: list[str] | None = None
) -> pd.DataFrame:
    """For sequence probes (windows in time order): t, expert, weight (last step for per-step gates), regime."""
    w = np.asarray(weights)
    w = w[:, -1] if w.ndim == 3 else w
    n, e = w.shape
    frame = pd.DataFrame({"t": np.repeat(np.arange(n), e), "expert": np.tile(expert_names(e), n), "weight": w.ravel()})
    if regimes is not None:
        reg = np.asarray(regimes)[:n]
        reg = reg[:, -1] if reg.ndim == 2 else reg
        labels = [
            regime_names[int(r)] if regime_names and 0 <= int(r) < len(regime_names) else f"regime {int(r)}"
            for r in reg
        ]
        frame["regime"] = np.repeat(labels, e)
    return frame


def _rule_frame(epoch: int, label: str) -> pd.DataFrame:
    return pd.DataFrame({"epoch": [epoch], "label": [label]})


def _epoch_rule(epoch: int | None, label: str, color: str = "#d62728") -> list[alt.Chart]:
    if epoch is None:
        return []
    return [
        alt.Chart(_rule_frame(epoch, label))
        .mark_rule(color=color, strokeDash=[5, 3])
        .encode(x="epoch:Q", tooltip=[alt.Tooltip("label:N", title=""), alt.Tooltip("epoch:Q")])
    ]


def _epoch_axis(epochs: tuple[int, int] | None) -> alt.X:
    """The epoch axis; charts shown side by side pass the same ``epochs`` (first, last) so their axes line up
    (otherwise each axis spans its own data, which differ where a metric is undefined at some epochs)."""
    scale = alt.Scale(domain=list(epochs), nice=False) if epochs is not None else alt.Undefined
    return alt.X("epoch:Q", title="epoch", scale=scale)


def load_area_chart(
    loads: pd.DataFrame,
    settle: int | None = None,
    current: int | None = None,
    width: int = 560,
    epochs: tuple[int, int] | None = None,
) -> alt.LayerChart:
    """Load per expert over epochs as a stacked area (shares sum to 1), settle and current epoch marked."""
    names = sorted(loads["expert"].unique(), key=lambda s: int(s.rsplit(" ", 1)[-1])) if len(loads) else []
    area = (
        alt.Chart(loads)
        .mark_area(opacity=0.85, interpolate="step-after")
        .encode(
            x=_epoch_axis(epochs),
            y=alt.Y("load:Q", stack="zero", title="load (top-1 share)", scale=alt.Scale(domain=[0, 1])),
            color=expert_color("expert", names),
            order=alt.Order("expert:N"),
            tooltip=[alt.Tooltip("epoch:Q"), alt.Tooltip("expert:N"), alt.Tooltip("load:Q", format=".2f")],
        )
    )
    layers = [area, *_epoch_rule(settle, "settled"), *_epoch_rule(current, "shown", "#333333")]
    return layered(*layers).properties(width=width, height=180, title="Load per expert over epochs")


def story_metrics_chart(
    metrics: pd.DataFrame,
    settle: int | None = None,
    current: int | None = None,
    width: int = 560,
    epochs: tuple[int, int] | None = None,
) -> alt.LayerChart:
    """NMI against the regimes (when known) and routing entropy over epochs, settle and current epoch marked."""
    long, *_ = story_metrics_data(metrics, settle, current)
    lines = (
        alt.Chart(long)
        .mark_line(point=alt.OverlayMarkDef(size=12))
        .encode(
            x=_epoch_axis(epochs),
            y=alt.Y("value:Q", title=None, scale=alt.Scale(domain=[0, 1])),
            color=alt.Color("metric:N", title=None, legend=alt.Legend(orient="bottom", direction="vertical")),
            tooltip=[alt.Tooltip("epoch:Q"), alt.Tooltip("metric:N"), alt.Tooltip("value:Q", format=".3f")],
        )
    )
    layers = [lines, *_epoch_rule(settle, "settled"), *_epoch_rule(current, "shown", "#333333")]
    return layered(*layers).properties(width=width, height=180, title="Specialisation over epochs")


def story_metrics_data(
    metrics: pd.DataFrame, settle: int | None = None, current: int | None = None, **_: Any
) -> list[pd.DataFrame]:
    keep = [m for m in STORY_METRICS if m in metrics and metrics[m].notna().any()]
    long = metrics.melt(id_vars=["epoch"], value_vars=keep, var_name="metric", value_name="value").dropna()
    long["metric"] = long["metric"].map(ROUTING_METRIC_LABELS)
    return [long, *(_rule_frame(e, label) for e, label in ((settle, "settled"), (current, "shown")) if e is not None)]


__all__ = [
    "data_points",
    "histogram_chart",
    "histogram_data",
    "load_area_chart",
    "load_bars_chart",
    "load_bars_data",
    "prediction_map_chart",
    "prediction_map_data",
    "region_map_chart",
    "region_map_data",
    "sequence_weights_frame",
    "story_metrics_chart",
    "story_metrics_data",
    "weights_long",
]


def regime_share_frame(weights: np.ndarray, regimes: np.ndarray | None) -> pd.DataFrame:
    """Per (regime, expert): the share of the regime's probe rows the expert wins (rows of each regime sum to 1)."""
    from kamoe_viz.interpret._common import rows_of
    from kamoe_viz.routing_metrics import winners

    flat = flatten_time(np.asarray(weights), 1)
    reg = rows_of(regimes, len(flat))
    if reg is None:
        return pd.DataFrame(columns=["regime", "expert", "share"])
    win = winners(flat)
    names = expert_names(flat.shape[1])
    rows = []
    for r in sorted({int(v) for v in reg if v >= 0}):
        mask = reg == r
        counts = np.bincount(win[mask & (win >= 0)], minlength=len(names)) / max(1, mask.sum())
        rows += [(f"regime {r}", names[e], float(c)) for e, c in enumerate(counts)]
    return pd.DataFrame(rows, columns=["regime", "expert", "share"])


def regime_share_chart(frame: pd.DataFrame, title: str = "Which expert takes which regime") -> alt.LayerChart:
    base = alt.Chart(frame).encode(x=alt.X("expert:N", title=None), y=alt.Y("regime:N", title=None))
    heat = base.mark_rect().encode(
        color=alt.Color("share:Q", scale=alt.Scale(scheme="blues", domain=[0, 1]), title="share of the regime's rows"),
        tooltip=["regime:N", "expert:N", alt.Tooltip("share:Q", format=".0%")],
    )
    text = base.mark_text().encode(
        text=alt.Text("share:Q", format=".0%"),
        color=alt.condition("datum.share > 0.5", alt.value("white"), alt.value("black")),
    )
    return layered(heat, text).properties(width=alt.Step(70), height=alt.Step(32), title=title)


def spline_curves_chart(frame: pd.DataFrame, columns: int = 4, title: str | None = None) -> alt.FacetChart:
    """The GRKAN gate's spline curves phi(x) in one snapshot, one small panel per edge."""
    chart = (
        alt.Chart(frame)
        .mark_line(strokeWidth=2)
        .encode(
            x=alt.X("x:Q", title=None),
            y=alt.Y("total:Q", title="φ(x)"),
            # the panel titles name the layer ("h10 → kan1·0"), so the colour needs no legend beside the panels
            color=alt.Color("layer:N", title=None, legend=None),
            tooltip=[
                alt.Tooltip("layer:N"),
                alt.Tooltip("edge:N"),
                alt.Tooltip("x:Q", format=".3g"),
                alt.Tooltip("total:Q", format=".3g"),
            ],
        )
        .properties(width=130, height=90)
        .facet(facet=alt.Facet("edge:N", title=None), columns=columns)
        .resolve_scale(x="independent", y="independent")
    )
    return chart if title is None else chart.properties(title=title)


def frame_chart(timeline: Any, snap: Any, points: pd.DataFrame | None = None) -> alt.TopLevelMixin:
    """One frame of the exported animation: the region map (2-D data) beside the load bars, titled by epoch."""
    parts = []
    region = timeline.region_frame(snap)
    if region is not None:
        parts.append(region_map_chart(region, points, size=240))
    parts.append(load_bars_chart(snap.metrics["load"], width=200))
    nmi = snap.metrics.get("nmi")
    subtitle = f"NMI vs regimes {nmi:.2f}" if isinstance(nmi, float) and math.isfinite(nmi) else ""
    return (
        alt.hconcat(*parts)
        .resolve_scale(color="independent")
        .properties(title=alt.Title(f"Epoch {snap.epoch}", subtitle=subtitle))
    )


__all__ += ["frame_chart", "regime_share_chart", "regime_share_frame", "spline_curves_chart"]
