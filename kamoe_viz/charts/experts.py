"""Charts of expert specialisation: contingency heatmap, per-expert error, output vs target, ablation."""

from __future__ import annotations

import altair as alt
import numpy as np
import pandas as pd

from kamoe_viz.charts.theme import expert_color, layered
from kamoe_viz.labels import metric_label

ERROR_LABELS = {
    "on_won_rows": "expert, on the rows it wins",
    "on_all_rows": "expert, on all rows",
    "mixture": "whole model, on those rows",
}


def contingency_chart(table: pd.DataFrame, truth_title: str = "true regime") -> alt.LayerChart:
    """Truth × winning expert: colour = share of the truth group won by the expert, text = row count.
    A clean specialisation shows one dark cell per row."""
    names = sorted(table["expert"].unique(), key=lambda s: int(s.rsplit(" ", 1)[-1]))
    truths = list(dict.fromkeys(table.sort_values("truth")["truth_name"]))
    base = alt.Chart(table).encode(
        x=alt.X("expert:N", sort=names, title="winning expert", axis=alt.Axis(labelAngle=0)),
        y=alt.Y("truth_name:N", sort=truths, title=truth_title, axis=alt.Axis(labelLimit=260)),
    )
    heat = base.mark_rect().encode(
        color=alt.Color(
            "share_of_truth:Q",
            scale=alt.Scale(scheme="blues", domain=[0, 1]),
            title=f"share of {truth_title}",
            legend=alt.Legend(format="%"),
        ),
        tooltip=[
            alt.Tooltip("truth_name:N", title=truth_title),
            alt.Tooltip("expert:N", title="winning expert"),
            alt.Tooltip("count:Q", title="rows"),
            alt.Tooltip("share_of_truth:Q", title=f"share of the {truth_title}", format=".1%"),
            alt.Tooltip("share_of_expert:Q", title="share of the expert's rows", format=".1%"),
        ],
    )
    text = base.mark_text(fontSize=12).encode(
        text="count:Q", color=alt.condition(alt.datum.share_of_truth > 0.5, alt.value("white"), alt.value("black"))
    )
    return layered(heat, text).properties(width=max(160, 70 * len(names)), height=max(100, 34 * len(truths)))


def expert_error_chart(errors: pd.DataFrame) -> alt.Chart:
    """Per expert: its error on the rows it wins vs on all rows (and the whole model on its rows)."""
    metric = next(c for c in errors.columns if c.endswith("_on_won_rows") and not c.startswith("mixture_"))
    name = metric[: -len("_on_won_rows")]
    renames = {
        f"{name}_on_won_rows": ERROR_LABELS["on_won_rows"],
        f"{name}_on_all_rows": ERROR_LABELS["on_all_rows"],
        f"mixture_{name}_on_won_rows": ERROR_LABELS["mixture"],
    }
    long = errors.melt(
        id_vars=["expert", "rows_won", "share_won"], value_vars=list(renames), var_name="where", value_name="error"
    )
    long["where"] = long["where"].map(renames)
    long = long[np.isfinite(long["error"].astype(float))]
    order = list(renames.values())
    names = list(errors["expert"])
    return (
        alt.Chart(long)
        .mark_bar()
        .encode(
            x=alt.X("expert:N", sort=names, title=None, axis=alt.Axis(labelAngle=0)),
            xOffset=alt.XOffset("where:N", sort=order),
            y=alt.Y("error:Q", title=name.replace("_", " ").upper() if name == "rmse" else name.replace("_", " ")),
            color=alt.Color(
                "where:N",
                sort=order,
                scale=alt.Scale(scheme="set2"),
                legend=alt.Legend(orient="top", title=None, labelLimit=260),
            ),
            tooltip=[
                alt.Tooltip("expert:N"),
                alt.Tooltip("where:N"),
                alt.Tooltip("error:Q", format=".4g"),
                alt.Tooltip("rows_won:Q", title="rows won"),
                alt.Tooltip("share_won:Q", format=".1%"),
            ],
        )
        .properties(width=max(220, 110 * len(names)), height=220)
    )


def expert_vs_target_chart(
    frame: pd.DataFrame, task: str = "regression", columns: int = 3, size: int = 220
) -> alt.ConcatChart:
    """Each expert's own prediction against the target (regression: scatter with the y = x line; won rows in
    the expert's colour, other rows grey). Classification: probability of the true class by class."""
    names = sorted(frame["expert"].unique(), key=lambda s: int(s.rsplit(" ", 1)[-1]))
    frame = frame.copy()
    frame["rows"] = np.where(frame["won"], "rows it wins", "other rows")
    charts = []
    for name in names:
        sub = frame[frame["expert"] == name]
        tooltip = [
            alt.Tooltip("row:Q"),
            alt.Tooltip("target"),
            alt.Tooltip("output:Q", format=".3g"),
            alt.Tooltip("weight:Q", title="its gate weight", format=".3f"),
            alt.Tooltip("rows:N"),
        ]
        color = alt.condition(alt.datum.won, expert_color("expert", names, legend=False), alt.value("#cccccc"))
        if task == "classification":
            chart = (
                alt.Chart(sub)
                .mark_tick(thickness=1.5)
                .encode(
                    x=alt.X("output:Q", title="probability of the true class", scale=alt.Scale(domain=[0, 1])),
                    y=alt.Y("target:N", title="true class"),
                    color=color,
                    tooltip=tooltip,
                )
            )
        else:
            lo = float(min(sub["target"].min(), sub["output"].min()))
            hi = float(max(sub["target"].max(), sub["output"].max()))
            points = (
                alt.Chart(sub)
                .mark_circle(size=14, opacity=0.6)
                .encode(
                    x=alt.X("target:Q", title="target", scale=alt.Scale(zero=False)),
                    y=alt.Y("output:Q", title="prediction", scale=alt.Scale(zero=False)),
                    color=color,
                    order=alt.Order("won:N"),
                    tooltip=tooltip,
                )
            )
            diag = (
                alt.Chart(pd.DataFrame({"target": [lo, hi], "output": [lo, hi]}))
                .mark_line(color="#555555", strokeDash=[4, 3])
                .encode(x="target:Q", y="output:Q")
            )
            chart = layered(diag, points)
        charts.append(chart.properties(width=size, height=size, title=name))
    return alt.concat(*charts, columns=columns)


def ablation_chart(frame: pd.DataFrame) -> alt.Chart:
    """How much worse the model gets when each expert is removed (bars > 0 = worse), per ablation mode."""
    metric = frame.attrs.get("metric") or next(c for c in ("rmse", "accuracy") if c in frame)
    data = frame[frame["removed"] != "none"].copy()
    full = float(frame.loc[frame["removed"] == "none", metric].iloc[0])
    data["full"] = full
    modes = list(dict.fromkeys(data["mode"]))
    return (
        alt.Chart(data)
        .mark_bar()
        .encode(
            y=alt.Y("removed:N", title="expert removed"),
            yOffset=alt.YOffset("mode:N", sort=modes),
            x=alt.X("harm:Q", title=f"{metric_label(metric)} worse by (0 = no effect)"),
            color=alt.Color(
                "mode:N", sort=modes, scale=alt.Scale(scheme="dark2"), legend=alt.Legend(orient="top", title="weights")
            ),
            tooltip=[
                alt.Tooltip("removed:N"),
                alt.Tooltip("mode:N", title="weights"),
                alt.Tooltip(f"{metric}:Q", title=f"{metric} without it", format=".4g"),
                alt.Tooltip("full:Q", title=f"{metric} of the full model", format=".4g"),
                alt.Tooltip("harm:Q", title="worse by", format=".4g"),
            ],
        )
        .properties(width=380, height=max(90, 26 * len(data)))
    )
