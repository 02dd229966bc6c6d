"""Charts of the gate: weight distributions, load bars, region maps, weights over time, partial dependence."""

from __future__ import annotations

from typing import Any

import altair as alt
import numpy as np
import pandas as pd

from kamoe_viz.charts.theme import HEAT_SCHEME, REGIME_SCHEME, SMALL, WIDE, expert_color, layered

LOAD_LABELS = {"mean_weight": "mean weight", "normalised_share": "normalised share", "top1_share": "top-1 share"}


def weight_histogram_chart(
    weights: pd.DataFrame, bins: int = 25, wrap: int | None = None, stacked: bool = False
) -> alt.Chart:
    """Per expert, the histogram of its gate weight over the rows (long frame: expert, weight). Side by side by
    default; ``wrap``: at most this many side by side, the rest on further rows; ``stacked``: one above the other
    on a shared weight axis, each named above its bars (for a narrow column)."""
    names = list(weights["expert"].unique())
    if stacked:
        facet: dict[str, Any] = {
            "row": alt.Row(
                "expert:N",
                title=None,
                sort=names,
                header=alt.Header(labelOrient="top", labelAnchor="start", labelPadding=1),
            )
        }
    elif wrap:
        facet = {"facet": alt.Facet("expert:N", title=None, sort=names, columns=wrap)}
    else:
        facet = {"column": alt.Column("expert:N", title=None, sort=names)}
    return (
        alt.Chart(weights)
        .mark_bar(opacity=0.85)
        .encode(
            x=alt.X("weight:Q", bin=alt.Bin(maxbins=bins, extent=[0, 1]), title="gate weight"),
            y=alt.Y("count():Q", title="rows", axis=alt.Axis(tickCount=2) if stacked else alt.Undefined),
            color=expert_color("expert", names, legend=False),
            **facet,
            tooltip=[
                alt.Tooltip("expert:N"),
                alt.Tooltip("weight:Q", bin=alt.Bin(maxbins=bins, extent=[0, 1]), title="weight bin"),
                alt.Tooltip("count():Q", title="rows"),
            ],
        )
        .properties(width=SMALL, height=120)
    )


def weight_violin_chart(weights: pd.DataFrame) -> alt.Chart:
    """Per expert, a violin (density) of its gate weight."""
    names = list(weights["expert"].unique())
    return (
        alt.Chart(weights)
        .transform_density("weight", as_=["weight", "density"], groupby=["expert"], extent=[0, 1])
        .mark_area(orient="horizontal")
        .encode(
            y=alt.Y("weight:Q", title="gate weight", scale=alt.Scale(domain=[0, 1])),
            x=alt.X(
                "density:Q",
                stack="center",
                impute=None,
                title=None,
                axis=alt.Axis(labels=False, values=[0], grid=False, ticks=True),
            ),
            color=expert_color("expert", names, legend=False),
            column=alt.Column("expert:N", title=None, sort=names, spacing=0, header=alt.Header(labelOrient="bottom")),
            tooltip=[
                alt.Tooltip("expert:N"),
                alt.Tooltip("weight:Q", format=".2f"),
                alt.Tooltip("density:Q", format=".3g"),
            ],
        )
        .properties(width=90, height=200)
    )


def load_chart(loads: pd.DataFrame) -> alt.LayerChart:
    """Grouped bars per expert: mean weight, normalised share and top-1 share (from ``load_table``), with the
    expert's status written above its bars when it is dead or always on."""
    long = loads.melt(
        id_vars=["expert", "status"], value_vars=list(LOAD_LABELS), var_name="measure", value_name="value"
    )
    long["measure"] = long["measure"].map(LOAD_LABELS)
    names = list(loads["expert"])
    x = alt.X("expert:N", title=None, sort=names, axis=alt.Axis(labelAngle=0))
    bars = (
        alt.Chart(long)
        .mark_bar()
        .encode(
            x=x,
            xOffset=alt.XOffset("measure:N", sort=list(LOAD_LABELS.values())),
            y=alt.Y("value:Q", title="share / weight", scale=alt.Scale(domain=[0, 1.08])),
            color=alt.Color(
                "measure:N",
                sort=list(LOAD_LABELS.values()),
                scale=alt.Scale(scheme="set2"),
                legend=alt.Legend(orient="top", title=None),
            ),
            tooltip=[
                alt.Tooltip("expert:N"),
                alt.Tooltip("measure:N"),
                alt.Tooltip("value:Q", format=".3f"),
                alt.Tooltip("status:N"),
            ],
        )
    )
    flags = loads[loads["status"] != "active"].assign(y=1.04)
    text = (
        alt.Chart(flags)
        .mark_text(color="#d62728", fontWeight="bold")
        .encode(x=x, y="y:Q", text="status:N", tooltip=[alt.Tooltip("expert:N"), alt.Tooltip("status:N")])
    )
    return layered(bars, text).properties(width=max(340, 90 * len(names)), height=220)


def _cells(grid: pd.DataFrame) -> pd.DataFrame:
    data = grid.copy()
    sx, sy = grid.attrs.get("step_x"), grid.attrs.get("step_y")
    if sx is None:
        xs, ys = np.unique(grid["x"]), np.unique(grid["y"])
        sx = float(xs[1] - xs[0]) if len(xs) > 1 else 1.0
        sy = float(ys[1] - ys[0]) if len(ys) > 1 else 1.0
    data["x_lo"], data["x_hi"] = data["x"] - sx / 2, data["x"] + sx / 2
    data["y_lo"], data["y_hi"] = data["y"] - sy / 2, data["y"] + sy / 2
    return data


def square_domains(cells: pd.DataFrame) -> tuple[list[float], list[float]]:
    """x and y domains of equal span around the data, so a square chart shows the plane undistorted (equal axes:
    a circle in the data stays a circle on screen)."""
    if not len(cells):
        return [0.0, 1.0], [0.0, 1.0]
    x_lo, x_hi = float(cells["x_lo"].min()), float(cells["x_hi"].max())
    y_lo, y_hi = float(cells["y_lo"].min()), float(cells["y_hi"].max())
    half = max(x_hi - x_lo, y_hi - y_lo) / 2
    cx, cy = (x_lo + x_hi) / 2, (y_lo + y_hi) / 2
    return [cx - half, cx + half], [cy - half, cy + half]


def _points_layer(points: pd.DataFrame, x_title: str, y_title: str) -> alt.Chart:
    shape = (
        alt.Shape("regime:N", legend=alt.Legend(orient="right", title="true regime"))
        if "regime" in points
        else alt.value("circle")
    )
    tooltip = [
        alt.Tooltip("x:Q", title=x_title, format=".3g"),
        alt.Tooltip("y:Q", title=y_title, format=".3g"),
        alt.Tooltip("winner:N", title="winning expert"),
        alt.Tooltip("winning_weight:Q", title="its weight", format=".2f"),
        alt.Tooltip("target", title="target"),
    ]
    if "regime" in points:
        tooltip.append(alt.Tooltip("regime:N", title="true regime"))
    return (
        alt.Chart(points)
        .mark_point(size=22, filled=True, color="#222222", opacity=0.65, strokeWidth=0.5)
        .encode(x=alt.X("x:Q", title=x_title), y=alt.Y("y:Q", title=y_title), shape=shape, tooltip=tooltip)
    )


# Translucent cells drawn edge to edge leave pale seams where anti-aliasing halves the coverage (stripes in PNG and
# GIF exports); a thin stroke of the cell's own colour closes them.
SEAM_STROKE = 0.6


def region_winner_chart(
    grid: pd.DataFrame, points: pd.DataFrame | None = None, x_title: str = "x", y_title: str = "y", size: int = 420
) -> alt.LayerChart:
    """The input plane coloured by the winning expert (paler where its weight is lower), data on top."""
    cells = _cells(grid.drop_duplicates(["x", "y"]))
    names = sorted(grid["expert"].unique(), key=lambda s: int(s.rsplit(" ", 1)[-1]))
    dx, dy = square_domains(cells)
    opacity = alt.Opacity("winning_weight:Q", scale=alt.Scale(range=[0.25, 0.9]), title="its weight", legend=None)
    heat = (
        alt.Chart(cells)
        .mark_rect(clip=True, strokeWidth=SEAM_STROKE)
        .encode(
            x=alt.X("x_lo:Q", title=x_title, scale=alt.Scale(domain=dx, nice=False)),
            x2="x_hi:Q",
            y=alt.Y("y_lo:Q", title=y_title, scale=alt.Scale(domain=dy, nice=False)),
            y2="y_hi:Q",
            color=expert_color("winner", names, title="winning expert"),
            stroke=expert_color("winner", names, legend=False),
            opacity=opacity,
            strokeOpacity=alt.StrokeOpacity("winning_weight:Q", scale=alt.Scale(range=[0.25, 0.9]), legend=None),
            tooltip=[
                alt.Tooltip("x:Q", title=x_title, format=".3g"),
                alt.Tooltip("y:Q", title=y_title, format=".3g"),
                alt.Tooltip("winner:N", title="winning expert"),
                alt.Tooltip("winning_weight:Q", title="its weight", format=".3f"),
            ],
        )
    )
    layers = [heat] + ([_points_layer(points, x_title, y_title)] if points is not None and len(points) else [])
    return layered(*layers).properties(width=size, height=size, title="Winning expert")


def region_weight_charts(
    grid: pd.DataFrame,
    points: pd.DataFrame | None = None,
    x_title: str = "x",
    y_title: str = "y",
    size: int = 185,
    columns: int = 3,
) -> alt.ConcatChart:
    """One heatmap per expert of its gate weight over the input plane, the data on top; ``columns`` per row
    (three of ``size`` px with axes and the legend fit the main column of a 1400 px window)."""
    cells = _cells(grid)
    charts = []
    names = sorted(grid["expert"].unique(), key=lambda s: int(s.rsplit(" ", 1)[-1]))
    top = float(cells["weight"].max()) if len(cells) else 1.0
    dx, dy = square_domains(cells)
    for name in names:
        heat = (
            alt.Chart(cells[cells["expert"] == name])
            .mark_rect(clip=True)
            .encode(
                x=alt.X("x_lo:Q", title=x_title, scale=alt.Scale(domain=dx, nice=False)),
                x2="x_hi:Q",
                y=alt.Y("y_lo:Q", title=y_title, scale=alt.Scale(domain=dy, nice=False)),
                y2="y_hi:Q",
                color=alt.Color(
                    "weight:Q", scale=alt.Scale(scheme=HEAT_SCHEME, domain=[0, max(top, 1e-9)]), title="gate weight"
                ),
                tooltip=[
                    alt.Tooltip("expert:N"),
                    alt.Tooltip("x:Q", title=x_title, format=".3g"),
                    alt.Tooltip("y:Q", title=y_title, format=".3g"),
                    alt.Tooltip("weight:Q", format=".3f"),
                ],
            )
        )
        layers = [heat] + ([_points_layer(points, x_title, y_title)] if points is not None and len(points) else [])
        charts.append(layered(*layers).properties(width=size, height=size, title=name))
    return alt.concat(*charts, columns=columns)


def gates_over_time_chart(frame: pd.DataFrame, width: int = WIDE) -> alt.VConcatChart:
    """Each expert's gate weight along the sequence, with the true regime as a band underneath."""
    names = sorted(frame["expert"].unique(), key=lambda s: int(s.rsplit(" ", 1)[-1]))
    end = float(frame["t"].max()) + 1 if len(frame) else 1.0
    x = alt.X("t:Q", title="window (time order)", scale=alt.Scale(nice=False, domain=[0, end]))
    has_band = "regime" in frame
    # With the regime band underneath, the axis title goes below the band (it overlapped the band before).
    top_x = alt.X("t:Q", title=None, scale=alt.Scale(nice=False, domain=[0, end])) if has_band else x
    lines = (
        alt.Chart(frame)
        .mark_line(strokeWidth=1.5)
        .encode(
            x=top_x,
            y=alt.Y("weight:Q", title="gate weight"),
            color=expert_color("expert", names),
            tooltip=[
                alt.Tooltip("t:Q", title="window"),
                alt.Tooltip("expert:N"),
                alt.Tooltip("weight:Q", format=".3f"),
            ],
        )
        .properties(width=width, height=220)
    )
    charts = [lines]
    if has_band:
        band = frame.drop_duplicates("t")[["t", "regime"]].copy()
        band["t2"] = band["t"] + 1
        charts.append(
            alt.Chart(band)
            .mark_rect(strokeWidth=0)
            .encode(
                x=x,
                x2="t2:Q",
                color=alt.Color(
                    "regime:N",
                    scale=alt.Scale(scheme=REGIME_SCHEME),
                    legend=alt.Legend(orient="bottom", title="true regime"),
                ),
                tooltip=[alt.Tooltip("t:Q", title="window"), alt.Tooltip("regime:N", title="true regime")],
            )
            .properties(width=width, height=28)
        )
    return alt.vconcat(*charts, spacing=18).resolve_scale(color="independent")


def partial_dependence_chart(frame: pd.DataFrame, columns: int = 4) -> alt.FacetChart:
    """How each expert's mean gate weight changes with each feature (partial dependence), one panel per
    feature in its original units."""
    names = sorted(frame["expert"].unique(), key=lambda s: int(s.rsplit(" ", 1)[-1]))
    features = list(dict.fromkeys(frame["feature"]))
    return (
        alt.Chart(frame)
        .mark_line(point=alt.OverlayMarkDef(size=14))
        .encode(
            x=alt.X("value:Q", title=None, scale=alt.Scale(zero=False, nice=False)),
            y=alt.Y("weight:Q", title="mean gate weight"),
            color=expert_color("expert", names),
            tooltip=[
                alt.Tooltip("feature:N"),
                alt.Tooltip("value:Q", format=".3g"),
                alt.Tooltip("expert:N"),
                alt.Tooltip("weight:Q", title="mean gate weight", format=".3f"),
            ],
        )
        .properties(width=SMALL + 20, height=130)
        .facet(
            facet=alt.Facet("feature:N", sort=features, title=None),
            columns=columns,
        )
        .resolve_scale(x="independent")
    )
