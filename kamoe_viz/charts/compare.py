"""Charts for the Compare page: metric per variant, validation-loss curves, cost, gate-weight distributions.

Pure functions: tidy DataFrames (from :class:`kamoe_viz.compare.ComparisonResult`) in, ``alt.Chart`` out.
"""

from __future__ import annotations

from collections.abc import Sequence

import altair as alt
import numpy as np
import pandas as pd

from kamoe_viz.charts.theme import OTHER_VARIANT_COLOR, VARIANT_COLORS, expert_color
from kamoe_viz.labels import variant_label

SHAPES = {"finished": "circle", "diverged": "cross"}


# variants beyond the four above (gate/router pairs): colours in order of appearance
EXTRA_COLORS = [
    OTHER_VARIANT_COLOR,
    "#e45756",
    "#72b7b2",
    "#eeca3b",
    "#ff9da6",
    "#9d755d",
    "#bab0ac",
    "#439894",
    "#d67195",
]


def _order(variants: Sequence[str]) -> list[str]:
    return [variant_label(v) for v in dict.fromkeys(variants)]


def _color(variants: Sequence[str]) -> alt.Scale:
    names = list(dict.fromkeys(variants))
    extra = iter(EXTRA_COLORS * (1 + len(names) // len(EXTRA_COLORS)))
    return alt.Scale(
        domain=[variant_label(v) for v in names],
        range=[VARIANT_COLORS[v] if v in VARIANT_COLORS else next(extra) for v in names],
    )


def metric_chart(
    table: pd.DataFrame, summary: pd.DataFrame, metric_label: str = "test metric", upper_bound: float | None = None
) -> alt.Chart:
    """One dot per run (seed) and the mean with its 95% CI, per variant; diverged runs drawn as crosses.

    ``upper_bound``: the metric's largest possible value (1 for R² and accuracy); the drawn interval stops there
    (with two or three seeds a t-interval easily reaches past it and squashes the dots)."""
    t = table.copy()
    variants = list(dict.fromkeys(t["variant"]))
    t["variant_label"] = t["variant"].map(variant_label)
    t["status"] = np.where(t["diverged"].astype(bool), "diverged", "finished")
    t = t[np.isfinite(t["test_metric"].astype(float))]
    statuses = [v for v in SHAPES if v in set(t["status"])] or ["finished"]  # a legend only for drawn crosses
    s = summary.copy()
    s["variant_label"] = s["variant"].map(variant_label)
    s = s[np.isfinite(s["mean"].astype(float))]
    if upper_bound is not None and len(s):
        s["ci_high"] = s["ci_high"].astype(float).clip(upper=upper_bound)
    y = alt.Y("variant_label:N", title=None, sort=_order(variants))
    color = alt.Color("variant_label:N", scale=_color(variants), legend=None)
    dots = (
        alt.Chart(t)
        .mark_point(size=70, filled=True, opacity=0.75)
        .encode(
            x=alt.X("test_metric:Q", title=metric_label, scale=alt.Scale(zero=False)),
            y=y,
            yOffset=alt.YOffset("jitter:Q"),
            color=color,
            shape=alt.Shape(
                "status:N",
                scale=alt.Scale(domain=statuses, range=[SHAPES[v] for v in statuses]),
                title="run",
                legend=alt.Legend() if len(statuses) > 1 else None,
            ),
            tooltip=[
                "variant",
                "seed",
                alt.Tooltip("test_metric:Q", format=".4f", title=metric_label),
                "epochs_run",
                alt.Tooltip("train_seconds:Q", format=".1f"),
                "stopped_reason",
            ],
        )
        .transform_calculate(jitter="random() * 16 - 8")
    )
    ci = (
        alt.Chart(s)
        .mark_rule(strokeWidth=3, color="black")
        .encode(
            x="ci_low:Q",
            x2="ci_high:Q",
            y=y,
            tooltip=[
                "variant",
                alt.Tooltip("mean:Q", format=".4f"),
                alt.Tooltip("ci_low:Q", format=".4f"),
                alt.Tooltip("ci_high:Q", format=".4f"),
                "n",
            ],
        )
    )
    mean = (
        alt.Chart(s)
        .mark_tick(thickness=3, size=26, color="black")
        .encode(x="mean:Q", y=y, tooltip=["variant", alt.Tooltip("mean:Q", format=".4f"), "n"])
    )
    return (ci + mean + dots).properties(
        title=f"{metric_label} per run (dots) and mean with 95% CI (black)", height=alt.Step(46)
    )


def loss_curves_chart(histories: pd.DataFrame, log_scale: bool = True) -> alt.Chart:
    """Validation loss per epoch, one line per run, coloured by variant."""
    h = histories.copy()
    if "val_loss" not in h.columns:
        h["val_loss"] = np.nan
    h = h[np.isfinite(pd.to_numeric(h["val_loss"], errors="coerce"))]
    if log_scale and len(h) and (h["val_loss"] <= 0).any():
        log_scale = False
    variants = list(dict.fromkeys(histories["variant"])) if "variant" in histories else []
    h["variant_label"] = h["variant"].map(variant_label) if len(h) else pd.Series(dtype=str)
    h["run"] = h["variant"].astype(str) + " / seed " + h["seed"].astype(str) if len(h) else pd.Series(dtype=str)
    # points too: a run of one epoch has no line to draw
    return (
        alt.Chart(h)
        .mark_line(opacity=0.7, strokeWidth=1.5, point=alt.OverlayMarkDef(size=18))
        .encode(
            x=alt.X("epoch:Q", title="epoch", axis=alt.Axis(format="d", tickMinStep=1)),
            y=alt.Y("val_loss:Q", title="validation loss", scale=alt.Scale(type="log" if log_scale else "linear")),
            color=alt.Color("variant_label:N", scale=_color(variants), title="variant"),
            detail="run:N",
            tooltip=["variant", "seed", "epoch", alt.Tooltip("val_loss:Q", format=".4g")],
        )
        .properties(title="Validation loss (one line per seed)", height=300)
    )


def cost_chart(cost: pd.DataFrame) -> alt.HConcatChart:
    """Parameters and mean training time per variant, side by side."""
    c = cost.copy()
    variants = list(c["variant"])
    c["variant_label"] = c["variant"].map(variant_label)
    y = alt.Y("variant_label:N", title=None, sort=_order(variants))
    color = alt.Color("variant_label:N", scale=_color(variants), legend=None)
    params = (
        alt.Chart(c)
        .mark_bar()
        .encode(
            x=alt.X("params:Q", title="trainable parameters"),
            y=y,
            color=color,
            tooltip=["variant", alt.Tooltip("params:Q", format=",.0f")],
        )
        .properties(title="Parameters", width=260)
    )
    seconds = (
        alt.Chart(c)
        .mark_bar()
        .encode(
            x=alt.X("train_seconds:Q", title="mean training time per run (s)"),
            y=y,
            color=color,
            tooltip=[
                "variant",
                alt.Tooltip("train_seconds:Q", format=".1f"),
                alt.Tooltip("epochs_run:Q", format=".0f", title="mean epochs"),
            ],
        )
        .properties(title="Training time", width=260)
    )
    return alt.hconcat(params, seconds)


def gate_histogram_frame(gate_samples: pd.DataFrame, bins: int = 20, seed: int | None = None) -> pd.DataFrame:
    """Binned gate weights: (variant, expert, bin_start, bin_end, fraction) on [0, 1]; one seed or all."""
    g = gate_samples
    if seed is not None and "seed" in g.columns:
        g = g[g["seed"] == seed]
    edges = np.linspace(0.0, 1.0, bins + 1)
    rows = []
    for (variant, expert), sub in g.groupby(["variant", "expert"], sort=False):
        w = np.clip(sub["weight"].to_numpy(float), 0.0, 1.0)
        counts, _ = np.histogram(w, bins=edges)
        total = max(1, counts.sum())
        for i, count in enumerate(counts):
            rows.append(
                {
                    "variant": variant,
                    "expert": f"expert {int(expert)}",
                    "bin_start": edges[i],
                    "bin_end": edges[i + 1],
                    "fraction": count / total,
                }
            )
    return pd.DataFrame(rows, columns=["variant", "expert", "bin_start", "bin_end", "fraction"])


def gate_distribution_chart(gate_samples: pd.DataFrame, seed: int | None = None, bins: int = 20) -> alt.Chart:
    """Each gate's weight distribution per expert, side by side, on the same test rows."""
    frame = gate_histogram_frame(gate_samples, bins=bins, seed=seed)
    variants = list(dict.fromkeys(frame["variant"]))
    frame["variant_label"] = frame["variant"].map(variant_label)
    which = f"seed {seed}" if seed is not None else "all seeds"
    return (
        alt.Chart(frame)
        .mark_bar(opacity=0.6, binSpacing=0)
        .encode(
            x=alt.X("bin_start:Q", bin="binned", title="gate weight", scale=alt.Scale(domain=[0, 1])),
            x2="bin_end:Q",
            y=alt.Y("fraction:Q", title="share of test rows", stack=None),
            color=expert_color("expert", list(frame["expert"].unique())),
            column=alt.Column("variant_label:N", title=None, sort=_order(variants)),
            tooltip=[
                "variant",
                "expert",
                alt.Tooltip("bin_start:Q", format=".2f"),
                alt.Tooltip("bin_end:Q", format=".2f"),
                alt.Tooltip("fraction:Q", format=".1%"),
            ],
        )
        .properties(width=220, height=180, title=f"Gate weights on the same test rows ({which})")
    )
