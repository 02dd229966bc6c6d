"""The one place that defines how the interpretation charts look: colours, sizes, shared scales."""
from __future__ import annotations

from typing import Sequence

import altair as alt

EXPERT_SCHEME = "tableau10"  # same scheme as the Train page's charts (charts_training)
EXPERT_SCHEME_MANY = "tableau20"
PART_COLORS = {"total": "#1f1f1f", "base": "#4c78a8", "spline": "#e45756", "symbolic fit": "#54a24b"}
REGIME_SCHEME = "greys"
HEAT_SCHEME = "viridis"
DIVERGING_SCHEME = "redblue"
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
    return alt.Scale(domain=domain, scheme=EXPERT_SCHEME if len(domain) <= 10 else EXPERT_SCHEME_MANY)


def _expert_order(name: str) -> int:
    try:
        return int(str(name).rsplit(" ", 1)[-1])
    except ValueError:
        return 10**6


def expert_color(field: str, names: Sequence[str], title: str | None = "expert", legend: bool = True) -> alt.Color:
    return alt.Color(f"{field}:N", scale=expert_scale(names), title=title,
                     legend=alt.Legend(orient="top") if legend else None)


def part_color(parts: Sequence[str]) -> alt.Color:
    parts = [p for p in PART_COLORS if p in set(parts)]
    return alt.Color("part:N", scale=alt.Scale(domain=parts, range=[PART_COLORS[p] for p in parts]),
                     title=None, legend=alt.Legend(orient="top"))

