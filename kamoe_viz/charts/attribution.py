"""Charts of Captum attributions, next to the spline importances they must not be confused with."""

from __future__ import annotations

import altair as alt
import pandas as pd

from kamoe_viz.charts.theme import METHOD_COLORS, layered


def _method_color() -> alt.Color:
    methods = ["Integrated Gradients", "Feature Ablation"]
    return alt.Color(
        "method:N",
        scale=alt.Scale(domain=methods, range=[METHOD_COLORS[m] for m in methods]),
        legend=alt.Legend(orient="top", title=None),
    )


def attribution_bars(frame: pd.DataFrame, title: str = "") -> alt.Chart:
    """Mean |attribution| per feature, Integrated Gradients and Feature Ablation side by side (one target)."""
    order = frame.groupby("feature")["mean_abs"].sum().sort_values(ascending=False).index.tolist()
    return (
        alt.Chart(frame)
        .mark_bar()
        .encode(
            y=alt.Y("feature:N", sort=order, title=None),
            yOffset=alt.YOffset("method:N"),
            x=alt.X("mean_abs:Q", title="mean |attribution|"),
            color=_method_color(),
            tooltip=[
                alt.Tooltip("target:N"),
                alt.Tooltip("method:N"),
                alt.Tooltip("feature:N"),
                alt.Tooltip("mean_abs:Q", title="mean |attribution|", format=".4g"),
                alt.Tooltip("mean:Q", title="mean attribution (signed)", format=".4g"),
                alt.Tooltip("share:Q", title="share of the total", format=".1%"),
            ],
        )
        .properties(width=320, height=max(100, 30 * len(order)), title=title)
    )


def row_attribution_chart(frame: pd.DataFrame, title: str = "") -> alt.LayerChart:
    """Signed attributions of one row (one target): which features push the output up or down."""
    order = (
        frame.groupby("feature")["attribution"]
        .apply(lambda s: s.abs().sum())
        .sort_values(ascending=False)
        .index.tolist()
    )
    bars = (
        alt.Chart(frame)
        .mark_bar()
        .encode(
            y=alt.Y("feature:N", sort=order, title=None),
            yOffset=alt.YOffset("method:N"),
            x=alt.X("attribution:Q", title="attribution (pushes the output up > 0, down < 0)"),
            color=_method_color(),
            tooltip=[
                alt.Tooltip("method:N"),
                alt.Tooltip("feature:N"),
                alt.Tooltip("value:Q", title="feature value", format=".4g"),
                alt.Tooltip("attribution:Q", format=".4g"),
                alt.Tooltip("f_x:Q", title="output", format=".4g"),
                alt.Tooltip("f_baseline:Q", title="output at baseline", format=".4g"),
            ],
        )
    )
    zero = alt.Chart(pd.DataFrame({"x": [0.0]})).mark_rule(color="#555555").encode(x="x:Q")
    return layered(bars, zero).properties(width=320, height=max(100, 30 * len(order)), title=title)


def spline_importance_bars(frame: pd.DataFrame, title: str = "", top: int = 20) -> alt.Chart:
    """Spline importance per input of one KAN layer (sum over its edges of mean |φ(x)|), top inputs."""
    data = frame.nlargest(top, "importance")
    return (
        alt.Chart(data)
        .mark_bar(color=METHOD_COLORS["spline importance"])
        .encode(
            y=alt.Y("input_name:N", sort="-x", title=None),
            x=alt.X("importance:Q", title="Σ mean |φ(x)| over the input's edges"),
            tooltip=[
                alt.Tooltip("layer:N"),
                alt.Tooltip("input_name:N", title="input"),
                alt.Tooltip("importance:Q", format=".4g"),
                alt.Tooltip("share:Q", format=".1%"),
            ],
        )
        .properties(width=260, height=max(100, 22 * len(data)), title=title)
    )


def side_by_side_chart(
    attributions: pd.DataFrame, spline_inputs: pd.DataFrame | None, target: str, layer: str | None = None
) -> alt.HConcatChart:
    """Captum attributions (left) and, where the model has KAN layers, spline importances (right)."""
    left = attribution_bars(
        attributions[attributions["target"] == target], title=f"Captum: {target} (model's output per input feature)"
    )
    if spline_inputs is None or spline_inputs.empty:
        return alt.hconcat(left)
    right = spline_importance_bars(
        spline_inputs[spline_inputs["layer"] == layer] if layer else spline_inputs,
        title=f"Spline importance: {layer} (per layer input, not per feature)",
    )
    return alt.hconcat(left, right).resolve_scale(color="independent")
