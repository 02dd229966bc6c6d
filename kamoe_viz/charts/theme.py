"""The one place that defines how every chart looks (Train, Compare and the interpretation pages): colours, sizes,
shared scales. Expert k has the same colour in every chart: the scale has a fixed domain and explicit colours."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final

import altair as alt

# Vega's tableau10 / tableau20 schemes, spelled out so a chart spec carries the colour itself
EXPERT_COLORS = [
    "#4c78a8",
    "#f58518",
    "#e45756",
    "#72b7b2",
    "#54a24b",
    "#eeca3b",
    "#b279a2",
    "#ff9da6",
    "#9d755d",
    "#bab0ac",
]
EXPERT_COLORS_MANY = [
    "#4c78a8",
    "#9ecae9",
    "#f58518",
    "#ffbf79",
    "#54a24b",
    "#88d27a",
    "#b79a20",
    "#f2cf5b",
    "#439894",
    "#83bcb6",
    "#e45756",
    "#ff9d98",
    "#79706e",
    "#bab0ac",
    "#d67195",
    "#fcbfd2",
    "#b279a2",
    "#d6a5c9",
    "#9e765f",
    "#d8b5a5",
]
SPLIT_COLORS = {"train": "#4c78a8", "validation": "#f58518"}  # loss curves
VARIANT_COLORS = {"standard": "#9d9d9d", "linear": "#4c78a8", "grn": "#f58518", "grkan": "#54a24b"}  # Compare
OTHER_VARIANT_COLOR = "#b279a2"
PART_COLORS = {"total": "#1f1f1f", "base": "#4c78a8", "spline": "#e45756", "symbolic fit": "#54a24b"}
REGIME_SCHEME: Final = "greys"
CLASS_SCHEME: Final = "tableau10"  # classes / regimes of a 2-D data preview (not experts)
# A model's predicted class over the input plane (Playground, timeline), drawn beside the region map: none of the
# first experts' colours (blue, orange, red, teal), so "orange" never means both an expert and a class.
PREDICTED_CLASS_COLORS: Final = ["#7b3294", "#1b7837", "#8c510a", "#c51b7d", "#666666", "#5aae61", "#bf812d", "#9970ab"]
HEAT_SCHEME: Final = "viridis"
DIVERGING_SCHEME: Final = "redblue"
METHOD_COLORS = {"Integrated Gradients": "#4c78a8", "Feature Ablation": "#f58518", "spline importance": "#54a24b"}
GRID_SHADE = "#9ecae9"
KNOT_COLOR = "#888888"
SMALL = 150  # width/height of one small multiple
WIDE = 640
TALL = 320


def expert_domain(n_experts: int) -> list[str]:
    return [f"expert {e}" for e in range(n_experts)]


def expert_scale(names: Sequence[str]) -> alt.Scale:
    """Colour scale with a fixed domain, so expert k has the same colour in every chart."""
    names = sorted(set(names), key=_expert_order)
    n = (_expert_order(names[-1]) + 1) if names and _expert_order(names[-1]) < 10**6 else len(names)
    domain = expert_domain(n) if all(x.startswith("expert ") for x in names) else list(names)
    colors = EXPERT_COLORS if len(domain) <= len(EXPERT_COLORS) else EXPERT_COLORS_MANY
    return alt.Scale(domain=domain, range=[colors[i % len(colors)] for i in range(len(domain))])


def _expert_order(name: str) -> int:
    try:
        return int(str(name).rsplit(" ", 1)[-1])
    except ValueError:
        return 10**6


def expert_color(field: str, names: Sequence[str], title: str | None = "expert", legend: bool = True) -> alt.Color:
    return alt.Color(
        f"{field}:N", scale=expert_scale(names), title=title, legend=alt.Legend(orient="top") if legend else None
    )


def part_color(parts: Sequence[str]) -> alt.Color:
    parts = [p for p in PART_COLORS if p in set(parts)]
    return alt.Color(
        "part:N",
        scale=alt.Scale(domain=parts, range=[PART_COLORS[p] for p in parts]),
        title=None,
        legend=alt.Legend(orient="top"),
    )


def layered(*charts: Any) -> alt.LayerChart:
    """``alt.layer`` without facet arguments, typed as what it returns: a LayerChart."""
    chart = alt.layer(*charts)
    assert isinstance(chart, alt.LayerChart)
    return chart
