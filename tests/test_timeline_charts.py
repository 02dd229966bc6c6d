"""The timeline and Playground charts: every builder's spec is valid Vega-Lite, and :func:`frames_spec` (what the
pages send, data kept as frames) is the same spec as :func:`chart_spec` (data as records)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

torch.set_num_threads(1)

from kamoe_viz.charts import timeline as tc
from kamoe_viz.charts import training as ct
from kamoe_viz.charts.export import chart_spec, frames_spec
from kamoe_viz.config import RunConfig
from kamoe_viz.training.session import TrainingSession


def _session(name: str, csv: str | None = None, **data_options: object) -> TrainingSession:
    raw = RunConfig().to_dict()
    raw["data"].update(name=name, options=data_options)
    if csv:
        raw["data"].update(csv_path=csv, target="y")
    raw["model"].update(gate="grkan", gate_activation="softmax", n_experts=2, expert="mlp", expert_hidden=[8])
    raw["train"].update(epochs=3, lr=1e-2, batch_size=64, device="cpu", early_stopping=0)
    session = TrainingSession(RunConfig.from_dict(raw))
    session.step(2)
    return session


def _charts(session: TrainingSession) -> dict[str, object]:
    snap, timeline = session.current(), session.timeline
    charts = {
        "load": tc.load_bars_chart(snap.metrics["load"]),
        "histogram": tc.histogram_chart(snap.weights),
        "story": tc.story_metrics_chart(timeline.metrics_frame(), 1, 2),
        "area": tc.load_area_chart(timeline.load_frame(), 1, 2),
        "loss": ct.loss_chart(ct.history_frame(session.epochs), best_epoch=session.last.best_epoch),
        "splines": tc.spline_curves_chart(timeline.spline_frame(snap, top=4)),
    }
    if session.dataset.is_2d:
        points = tc.data_points(session.dataset)
        charts |= {
            "region": tc.region_map_chart(timeline.region_frame(snap), points),
            "prediction": tc.prediction_map_chart(timeline.prediction_frame(snap), points),
            "frame": tc.frame_chart(timeline, snap, points),
        }
    return charts


def _canonical(spec: dict) -> str:
    """The spec with each dataset's name replaced by its rows (names differ: content hash vs frame number)."""
    spec = dict(spec)
    datasets = {
        name: rows.to_dict("records") if isinstance(rows, pd.DataFrame) else rows
        for name, rows in spec.pop("datasets", {}).items()
    }
    text = json.dumps(spec, sort_keys=True)
    for name, rows in datasets.items():
        text = text.replace(json.dumps(name), json.dumps(json.dumps(rows, sort_keys=True, default=float)))
    return text


@pytest.mark.parametrize(
    "dataset", ["moons", "regimes", "csv"], ids=["2-D classification", "regression with regimes", "2-D regression"]
)
def test_every_timeline_chart_is_valid_and_frames_spec_matches(dataset: str, tmp_path) -> None:
    if dataset == "csv":
        rng = np.random.default_rng(0)
        x = rng.uniform(-1, 1, (200, 2))
        pd.DataFrame({"a": x[:, 0], "b": x[:, 1], "y": x[:, 0] * x[:, 1]}).to_csv(tmp_path / "plane.csv", index=False)
        session = _session("csv", csv=str(tmp_path / "plane.csv"))
    else:
        session = _session(dataset, n_samples=300)
    assert session.dataset.is_2d == (dataset != "regimes")
    for name, chart in _charts(session).items():
        values = chart_spec(chart, validate=True)  # raises on an invalid spec
        frames = frames_spec(chart)
        assert all(isinstance(v, pd.DataFrame) for v in frames["datasets"].values()), name
        assert sum(len(v) for v in frames["datasets"].values()) == sum(len(v) for v in values["datasets"].values()), (
            name
        )
        assert _canonical(frames) == _canonical(values), name


def test_frames_spec_leaves_the_chart_unchanged() -> None:
    session = _session("moons", n_samples=200)
    chart = tc.region_map_chart(session.timeline.region_frame(session.current()), tc.data_points(session.dataset))
    first = frames_spec(chart)
    assert _canonical(frames_spec(chart)) == _canonical(first)  # the chart still holds its frames
    assert _canonical(chart_spec(chart, validate=False)) == _canonical(first)


def _live_inputs(session: TrainingSession) -> dict[str, tuple[tuple, dict]]:
    snap, timeline = session.current(), session.timeline
    points = tc.data_points(session.dataset)
    history = ct.history_frame(session.epochs)
    return {
        "region": ((timeline.region_frame(snap), points), {"size": 230}),
        "prediction": ((timeline.prediction_frame(snap), points), {"size": 230}),
        "load": ((snap.metrics["load"],), {}),
        "histogram": ((snap.weights,), {}),
        "story": ((timeline.metrics_frame(),), {"width": 240}),
        "loss": ((history,), {"best_epoch": session.last.best_epoch, "height": 160}),
    }


def test_live_specs_refilled_with_new_data_equal_a_fresh_build() -> None:
    from kamoe_viz.charts.live import LIVE_CHARTS, LiveSpecs

    session = _session("moons", n_samples=300)
    specs = LiveSpecs()
    for name, (args, kwargs) in _live_inputs(session).items():
        specs.spec(name, *args, **kwargs)
    assert specs.builds == len(LIVE_CHARTS)
    session.step(1)  # new weights, losses, metrics: same shapes
    for name, (args, kwargs) in _live_inputs(session).items():
        refilled = specs.spec(name, *args, **kwargs)
        assert _canonical(refilled) == _canonical(frames_spec(LIVE_CHARTS[name].build(*args, **kwargs))), name
    assert specs.builds == len(LIVE_CHARTS)  # nothing rebuilt
    session.reset()  # epoch 0 again: no losses, so the loss chart has no best-epoch rule, another shape
    specs.spec("loss", ct.history_frame([]), best_epoch=None, height=160)
    assert specs.builds == len(LIVE_CHARTS) + 1


def test_the_story_charts_share_one_epoch_axis():
    """Side by side on Gates, the load area and the metrics lines span the same epochs even where a metric is
    undefined at some of them."""
    session = _session("regimes")
    timeline = session.timeline
    metrics = timeline.metrics_frame()
    metrics.loc[metrics["epoch"] == 0, [c for c in metrics.columns if c != "epoch"]] = float("nan")

    def domain(chart) -> list:
        layer = chart.to_dict()["layer"][0]
        return layer["encoding"]["x"]["scale"]["domain"]

    epochs = (min(timeline.epochs), max(timeline.epochs))
    area = tc.load_area_chart(timeline.load_frame(), epochs=epochs)
    story = tc.story_metrics_chart(metrics, epochs=epochs)
    assert domain(area) == domain(story) == [0, max(timeline.epochs)]
