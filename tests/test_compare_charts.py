"""Compare-page chart builders: pure DataFrame -> Altair, checked without Streamlit or training."""

from __future__ import annotations

import altair as alt
import numpy as np
import pandas as pd
import pytest

from kamoe_viz.charts import compare as cc
from kamoe_viz.stats import summary

VARIANTS = ["standard", "linear", "grn", "grkan"]


@pytest.fixture
def frames():
    rng = np.random.default_rng(0)
    table = pd.DataFrame(
        {
            "variant": np.repeat(VARIANTS, 3),
            "seed": np.tile([0, 1, 2], 4),
            "test_metric": rng.normal(0.8, 0.02, 12),
            "diverged": [False] * 11 + [True],
            "epochs_run": 10,
            "train_seconds": rng.uniform(1, 3, 12),
            "stopped_reason": "completed",
            "params": np.repeat([40, 160, 230, 420], 3),
        }
    )
    table.loc[11, "test_metric"] = np.nan  # a diverged run without a score
    hist = pd.DataFrame(
        [
            {"variant": v, "seed": s, "epoch": e, "train_loss": 1 / e, "val_loss": 1.1 / e}
            for v in VARIANTS
            for s in range(3)
            for e in range(1, 6)
        ]
    )
    samples = pd.DataFrame(
        [
            {"variant": v, "seed": s, "row": r, "expert": e, "weight": rng.uniform()}
            for v in VARIANTS[1:]
            for s in range(2)
            for r in range(20)
            for e in range(3)
        ]
    )
    return table, hist, samples


def _data(chart: alt.TopLevelMixin) -> list[pd.DataFrame]:
    spec = chart.to_dict()
    return [pd.DataFrame(v) for v in spec.get("datasets", {}).values()]


def test_metric_chart_has_runs_and_intervals(frames):
    table, _, _ = frames
    chart = cc.metric_chart(table, summary(table), "R²")
    assert isinstance(chart, alt.LayerChart)
    data = _data(chart)
    dots = next(d for d in data if "seed" in d.columns)
    assert len(dots) == 11  # the NaN run is not drawn, the finite ones are
    intervals = next(d for d in data if "ci_low" in d.columns)
    assert set(intervals["variant"]) == set(VARIANTS) and intervals["n"].tolist() == [3, 3, 3, 2]
    assert "R²" in str(chart.to_dict())

    def shapes(chart):
        (shape,) = [layer["encoding"]["shape"] for layer in chart.to_dict()["layer"] if "shape" in layer["encoding"]]
        return shape["scale"]["domain"], shape.get("legend", {})

    assert shapes(chart) == (["finished"], None)  # its one diverged run has no score: no cross, no legend
    scored = table.assign(test_metric=table["test_metric"].fillna(0.5))
    assert shapes(cc.metric_chart(scored, summary(scored), "R²")) == (["finished", "diverged"], {})


def test_loss_curves_one_line_per_run(frames):
    _, hist, _ = frames
    chart = cc.loss_curves_chart(hist)
    spec = chart.to_dict()
    assert spec["encoding"]["detail"]["field"] == "run"
    assert spec["encoding"]["y"]["scale"]["type"] == "log"
    (data,) = _data(chart)
    assert data["run"].nunique() == 12
    bad = hist.assign(val_loss=-hist["val_loss"])
    assert cc.loss_curves_chart(bad).to_dict()["encoding"]["y"]["scale"]["type"] == "linear"


def test_cost_chart_side_by_side(frames):
    table, _, _ = frames
    cost = (
        table.groupby("variant", sort=False)
        .agg(params=("params", "median"), train_seconds=("train_seconds", "mean"), epochs_run=("epochs_run", "mean"))
        .reset_index()
    )
    chart = cc.cost_chart(cost)
    assert isinstance(chart, alt.HConcatChart) and len(chart.hconcat) == 2


def test_gate_histogram_fractions_sum_to_one(frames):
    _, _, samples = frames
    frame = cc.gate_histogram_frame(samples, bins=10, seed=0)
    sums = frame.groupby(["variant", "expert"])["fraction"].sum()
    assert np.allclose(sums, 1.0) and len(sums) == 9
    assert frame["bin_start"].min() == 0.0 and frame["bin_end"].max() == 1.0
    chart = cc.gate_distribution_chart(samples, seed=None)
    spec = chart.to_dict()
    assert spec["encoding"]["column"]["field"] == "variant_label"
    assert "all seeds" in str(spec["title"])


def test_metric_chart_stops_intervals_at_the_metrics_bound(frames):
    table, _, _ = frames
    wide = summary(table).assign(ci_high=2.5)  # a two-seed t-interval can reach past R² = 1
    drawn = next(d for d in _data(cc.metric_chart(table, wide, "R²", upper_bound=1.0)) if "ci_high" in d.columns)
    assert drawn["ci_high"].max() == 1.0
    unbounded = next(d for d in _data(cc.metric_chart(table, wide, "RMSE")) if "ci_high" in d.columns)
    assert unbounded["ci_high"].max() == 2.5
