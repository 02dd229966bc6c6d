"""Charts of KAN edges: small multiples ranked and faded by importance, one edge large, importance bars."""

from __future__ import annotations

from collections.abc import Sequence

import altair as alt
import numpy as np
import pandas as pd

from kamoe_viz.charts.theme import GRID_SHADE, KNOT_COLOR, PART_COLORS, SMALL, TALL, WIDE, layered, part_color

PARTS = ("total", "base", "spline")
HIST_HEIGHT = 0.25  # the data histogram fills at most this share of an edge's y range, at the bottom


def edge_frame(
    curves: pd.DataFrame,
    importance: pd.DataFrame,
    knots: pd.DataFrame,
    coverage: pd.DataFrame,
    histograms: pd.DataFrame,
    parts: Sequence[str] = ("total",),
    fit: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """One tidy frame for the edge charts, a ``kind`` per layer: panel, curve, hist, grid, knot (and fit).

    Inputs are the frames of :mod:`kamoe_viz.interpret.splines` for one layer (``fit``: columns x, y for a
    symbolic fit to draw over a single edge). The histogram is scaled into the bottom quarter of each edge's
    y range, and the grid range and knots are clipped to the plotted x range.
    """
    bad = [p for p in parts if p not in PARTS]
    if bad or not parts:
        raise ValueError(f"parts must be chosen from {', '.join(PARTS)}, got {list(parts)}")
    info = importance.set_index(["input", "output"])
    cover = coverage.set_index("input") if not coverage.empty else None
    frames = []
    for (i, j), curve in curves.groupby(["input", "output"], sort=False):
        meta = info.loc[(i, j)] if (i, j) in info.index else None
        common = {
            "edge": curve["edge"].iloc[0],
            "input": i,
            "output": j,
            "importance": float(meta["importance"]) if meta is not None else np.nan,
            "relative": float(meta["relative"]) if meta is not None else 1.0,
            "rank": int(meta["rank"]) if meta is not None else 0,
            "outside_fraction": float(cover.loc[i, "outside_fraction"]) if cover is not None else np.nan,
        }
        x = curve["x"].to_numpy()
        xmin, xmax = float(x.min()), float(x.max())
        values = np.concatenate([curve[p].to_numpy() for p in parts])
        if fit is not None:
            values = np.concatenate([values, fit["y"].to_numpy()[np.isfinite(fit["y"].to_numpy())]])
        ymin, ymax = float(values.min()), float(values.max())
        height = ymax - ymin if ymax > ymin else 1.0
        frames.append(pd.DataFrame({**common, "kind": "panel", "x": [xmin], "x2": [xmax]}))
        for p in parts:
            frames.append(pd.DataFrame({**common, "kind": "curve", "part": p, "x": x, "y": curve[p].to_numpy()}))
        if fit is not None:
            frames.append(
                pd.DataFrame(
                    {
                        **common,
                        "kind": "fit",
                        "part": "symbolic fit",
                        "x": fit["x"].to_numpy(),
                        "y": fit["y"].to_numpy(),
                    }
                )
            )
        hist = histograms[histograms["input"] == i]
        if len(hist):
            top = max(float(hist["fraction"].max()), 1e-12)
            frames.append(
                pd.DataFrame(
                    {
                        **common,
                        "kind": "hist",
                        "x": hist["bin_start"].to_numpy(),
                        "x2": hist["bin_end"].to_numpy(),
                        "y": ymin,
                        "y2": ymin + HIST_HEIGHT * height * hist["fraction"].to_numpy() / top,
                        "share": hist["fraction"].to_numpy(),
                    }
                )
            )
        if cover is not None and i in cover.index:
            low, high = max(float(cover.loc[i, "grid_low"]), xmin), min(float(cover.loc[i, "grid_high"]), xmax)
            if high > low:
                frames.append(pd.DataFrame({**common, "kind": "grid", "x": [low], "x2": [high]}))
        kn = knots[(knots["input"] == i) & (knots["position"] >= xmin) & (knots["position"] <= xmax)]
        if len(kn):
            frames.append(
                pd.DataFrame({**common, "kind": "knot", "x": kn["position"].to_numpy(), "knot": kn["knot"].to_numpy()})
            )
    columns = [
        "edge",
        "input",
        "output",
        "importance",
        "relative",
        "rank",
        "outside_fraction",
        "kind",
        "part",
        "x",
        "x2",
        "y",
        "y2",
        "share",
        "knot",
    ]
    if not frames:
        return pd.DataFrame(columns=columns)
    return pd.concat(frames, ignore_index=True).reindex(columns=columns)


EDGE_PICK = "edge_pick"  # name of the click selection of the small multiples (fields: input, output)


def _edge_layers(
    frame: pd.DataFrame, faded: bool, x_title: str, y_title: str, selectable: bool = False
) -> alt.LayerChart:
    parts = list(frame["part"].dropna().unique())
    base = alt.Chart(frame)
    x = alt.X("x:Q", title=x_title, scale=alt.Scale(zero=False, nice=False))
    grid = (
        base.transform_filter(alt.datum.kind == "grid")
        .mark_rect(color=GRID_SHADE, opacity=0.25)
        .encode(
            x=x,
            x2="x2:Q",
            tooltip=[
                alt.Tooltip("x:Q", title="grid from", format=".3g"),
                alt.Tooltip("x2:Q", title="grid to", format=".3g"),
                alt.Tooltip("outside_fraction:Q", title="data outside grid", format=".1%"),
            ],
        )
    )
    hist = (
        base.transform_filter(alt.datum.kind == "hist")
        .mark_rect(color="#bbbbbb", opacity=0.7)
        .encode(
            x=x,
            x2="x2:Q",
            y=alt.Y("y:Q"),
            y2="y2:Q",
            tooltip=[
                alt.Tooltip("x:Q", title="bin from", format=".3g"),
                alt.Tooltip("x2:Q", title="bin to", format=".3g"),
                alt.Tooltip("share:Q", title="share of data", format=".1%"),
            ],
        )
    )
    knots = (
        base.transform_filter(alt.datum.kind == "knot")
        .mark_rule(color=KNOT_COLOR, strokeDash=[3, 3], opacity=0.7)
        .encode(x=x, tooltip=[alt.Tooltip("knot:Q", title="knot"), alt.Tooltip("x:Q", title="position", format=".3g")])
    )
    opacity = (
        alt.Opacity("relative:Q", scale=alt.Scale(domain=[0, 1], range=[0.2, 1]), legend=None)
        if faded
        else alt.value(1)
    )
    tooltip = [
        alt.Tooltip("edge:N"),
        alt.Tooltip("part:N"),
        alt.Tooltip("x:Q", format=".3g"),
        alt.Tooltip("y:Q", title="φ(x)", format=".3g"),
        alt.Tooltip("importance:Q", title="importance (mean |φ|)", format=".3g"),
        alt.Tooltip("rank:Q", title="rank in layer"),
    ]
    lines = (
        base.transform_filter(alt.datum.kind == "curve")
        .mark_line(strokeWidth=2)
        .encode(
            x=x,
            y=alt.Y("y:Q", title=y_title, scale=alt.Scale(zero=False)),
            color=part_color(parts),
            opacity=opacity,
            detail="part:N",
            tooltip=tooltip,
        )
    )
    layers = [grid, hist, knots, lines]
    if selectable:  # an invisible panel-sized target: a click anywhere in a panel picks its edge
        pick = alt.selection_point(name=EDGE_PICK, fields=["input", "output"], on="click", clear="dblclick")
        target = (
            base.transform_filter(alt.datum.kind == "panel")
            .mark_rect(color="white", opacity=0.01)
            .encode(x=x, x2="x2:Q", tooltip=[alt.Tooltip("edge:N", title="click to show large")])
            .add_params(pick)
        )
        layers.insert(0, target)
    if (frame["kind"] == "fit").any():
        layers.append(
            base.transform_filter(alt.datum.kind == "fit")
            .mark_line(strokeDash=[6, 3], strokeWidth=2, color=PART_COLORS["symbolic fit"])
            .encode(
                x=x, y="y:Q", tooltip=[alt.Tooltip("x:Q", format=".3g"), alt.Tooltip("y:Q", title="fit", format=".3g")]
            )
        )
    return layered(*layers)


def edge_grid_chart(
    frame: pd.DataFrame,
    columns: int = 4,
    width: int = SMALL,
    height: int = 110,
    x_title: str = "input x",
    y_title: str = "φ(x)",
    selectable: bool = False,
) -> alt.FacetChart:
    """Small multiples, one panel per edge, ordered by importance rank, faded by relative importance; grey bars
    at the bottom = where the training data lie, blue band = the spline grid range, dashed rules = knots.
    ``selectable`` adds a click selection named :data:`EDGE_PICK` (fields input, output)."""
    layers = _edge_layers(frame, faded=True, x_title=x_title, y_title=y_title, selectable=selectable).properties(
        width=width, height=height
    )
    return layers.facet(
        facet=alt.Facet(
            "edge:N",
            title=None,
            sort=alt.EncodingSortField(field="rank", op="min"),
            header=alt.Header(labelFontSize=11, labelLimit=width),
        ),
        columns=columns,
    ).resolve_scale(x="independent", y="independent")


def edge_detail_chart(
    frame: pd.DataFrame, title: str = "", x_title: str = "input x", y_title: str = "φ(x)"
) -> alt.LayerChart:
    """One edge, large, with hover tooltips on the curves (and the symbolic fit when in the frame)."""
    return _edge_layers(frame, faded=False, x_title=x_title, y_title=y_title).properties(
        width=WIDE, height=TALL, title=title
    )


BAR_STEP = 18  # px per bar of the horizontal bar charts: room for every label
_EVERY_LABEL = alt.Axis(labelOverlap=False, labelLimit=160)  # never drop a bar's label


def importance_bars(importance: pd.DataFrame, threshold: float = 0.0, top: int = 30) -> alt.LayerChart:
    """The layer's most important edges as bars (relative importance), the threshold as a rule; bars below
    the threshold are greyed."""
    data = importance.nsmallest(top, "rank").copy()
    data["shown"] = np.where(data["relative"] >= threshold, "shown", "below threshold")
    bars = (
        alt.Chart(data)
        .mark_bar()
        .encode(
            x=alt.X("relative:Q", title="relative importance (mean |φ| / layer max)", scale=alt.Scale(domain=[0, 1])),
            y=alt.Y("edge:N", sort=alt.EncodingSortField(field="rank", op="min"), title=None, axis=_EVERY_LABEL),
            color=alt.Color(
                "shown:N",
                scale=alt.Scale(domain=["shown", "below threshold"], range=["#4c78a8", "#cccccc"]),
                legend=alt.Legend(orient="top", title=None),
            ),
            tooltip=[
                alt.Tooltip("edge:N"),
                alt.Tooltip("importance:Q", title="mean |φ(x)|", format=".4g"),
                alt.Tooltip("base_importance:Q", title="mean |base part|", format=".4g"),
                alt.Tooltip("spline_importance:Q", title="mean |spline part|", format=".4g"),
                alt.Tooltip("relative:Q", format=".2f"),
                alt.Tooltip("rank:Q"),
            ],
        )
    )
    rule = (
        alt.Chart(pd.DataFrame({"threshold": [threshold]}))
        .mark_rule(color="#e45756", strokeDash=[4, 2])
        .encode(x="threshold:Q", tooltip=[alt.Tooltip("threshold:Q", title="threshold", format=".2f")])
    )
    return layered(bars, rule).properties(width=360, height=alt.Step(BAR_STEP))


def coverage_chart(coverage: pd.DataFrame, threshold: float = 0.10) -> alt.LayerChart:
    """Share of each input's data outside the spline grid, with the warning level."""
    data = coverage.copy()
    data["status"] = np.where(data["outside_fraction"] > threshold, "above warning level", "ok")
    bars = (
        alt.Chart(data)
        .mark_bar()
        .encode(
            x=alt.X(
                "outside_fraction:Q",
                title="share of training data outside the grid",
                scale=alt.Scale(domain=[0, 1]),
                axis=alt.Axis(format="%"),
            ),
            y=alt.Y("input_name:N", sort=None, title=None, axis=_EVERY_LABEL),
            color=alt.Color(
                "status:N",
                scale=alt.Scale(domain=["ok", "above warning level"], range=["#4c78a8", "#e45756"]),
                legend=alt.Legend(orient="top", title=None),
            ),
            tooltip=[
                alt.Tooltip("layer:N"),
                alt.Tooltip("input_name:N", title="input"),
                alt.Tooltip("outside_fraction:Q", title="outside grid", format=".1%"),
                alt.Tooltip("grid_low:Q", format=".3g"),
                alt.Tooltip("grid_high:Q", format=".3g"),
                alt.Tooltip("data_low:Q", format=".3g"),
                alt.Tooltip("data_high:Q", format=".3g"),
            ],
        )
    )
    rule = alt.Chart(pd.DataFrame({"t": [threshold]})).mark_rule(color="#e45756", strokeDash=[4, 2]).encode(x="t:Q")
    return layered(bars, rule).properties(width=360, height=alt.Step(BAR_STEP))


def symbolic_fit_chart(fits: pd.DataFrame) -> alt.Chart:
    """R² of each candidate function of the symbolic fit, best first, with the formula in the tooltip."""
    data = fits[fits["valid"]].copy()
    data["r2_shown"] = data["r2"].clip(lower=0)
    return (
        alt.Chart(data)
        .mark_bar(color="#54a24b")
        .encode(
            x=alt.X("r2_shown:Q", title="R² (negative shown as 0)", scale=alt.Scale(domain=[0, 1])),
            y=alt.Y("candidate:N", sort="-x", title=None, axis=_EVERY_LABEL),
            tooltip=[
                alt.Tooltip("candidate:N"),
                alt.Tooltip("r2:Q", title="R²", format=".4f"),
                alt.Tooltip("rmse:Q", format=".3g"),
                alt.Tooltip("formula:N"),
            ],
        )
        .properties(width=320, height=alt.Step(BAR_STEP))
    )
