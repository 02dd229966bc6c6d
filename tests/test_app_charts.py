"""kamoe_viz.charts.training: frames built from training records, and the Train page's Altair charts."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from kamoe_viz.charts import training as ct


def _records(n: int = 4, experts: int = 3) -> list:
    rng = np.random.default_rng(0)
    return [
        SimpleNamespace(
            epoch=e,
            train_loss=1.0 / e,
            val_loss=1.5 / e,
            best_epoch=e,
            gate_weights=rng.dirichlet(np.ones(experts), size=20),
        )
        for e in range(1, n + 1)
    ]


def test_history_frame_from_records_and_from_a_history_table():
    long = ct.history_frame(_records())
    assert list(long.columns) == ["epoch", "split", "loss"] and len(long) == 8
    assert set(long["split"]) == {"train", "validation"}
    table = pd.DataFrame({"epoch": [1, 2], "train_loss": [1.0, float("nan")], "val_loss": [2.0, float("inf")]})
    assert len(ct.history_frame(table)) == 2  # NaN/inf losses (a diverged epoch) are left out, not plotted


def test_gate_weight_frame_shapes():
    frame = ct.gate_weight_frame(np.full((5, 3), 1 / 3))
    assert len(frame) == 15 and set(frame["expert"]) == {"expert 0", "expert 1", "expert 2"}
    assert len(ct.gate_weight_frame(np.zeros((4, 6, 2)))) == 48  # sequences: every time step counts
    with pytest.raises(ValueError, match="gate_weights"):
        ct.gate_weight_frame(np.zeros(3))


def test_expert_load_definitions():
    softmax = np.array([[0.7, 0.2, 0.1], [0.5, 0.3, 0.2]])
    np.testing.assert_allclose(ct.expert_load(softmax, "softmax"), [0.6, 0.25, 0.15])
    sigmoid = np.array([[0.9, 0.9, 0.2], [0.7, 0.9, 0.2]])  # means 0.8, 0.9, 0.2 -> shares of 1.9
    np.testing.assert_allclose(ct.expert_load(sigmoid, "sigmoid"), np.array([0.8, 0.9, 0.2]) / 1.9)
    np.testing.assert_allclose(ct.expert_load(np.zeros((3, 4)), "sigmoid"), [0.25] * 4)
    loads = ct.load_history_frame(_records(3), "softmax")
    assert len(loads) == 9 and np.allclose(loads.groupby("epoch")["load"].sum(), 1.0)


def test_preview_frame_names_classes_regimes_and_uses_the_last_step_of_windows():
    X = np.arange(24, dtype=float).reshape(4, 3, 2)  # 4 windows, 3 steps, 2 features
    frame = ct.preview_frame(
        X,
        np.array([0, 1, 1, 0]),
        ["a", "b"],
        "y",
        class_names=["no", "yes"],
        regimes=np.array([1, 0, 1, 1]),
        regime_names=["calm", "storm"],
    )
    assert list(frame.columns) == ["a", "b", "y", "regime"]
    assert frame["a"].tolist() == [4.0, 10.0, 16.0, 22.0]
    assert frame["y"].tolist() == ["no", "yes", "yes", "no"] and frame["regime"].tolist()[:2] == ["storm", "calm"]


def test_charts_are_valid_vega_lite():
    records = _records()
    loss = ct.loss_chart(ct.history_frame(records), best_epoch=3).to_dict()
    assert loss["layer"][1]["mark"]["type"] == "rule"  # the best-epoch marker
    assert loss["layer"][0]["encoding"]["y"]["scale"]["type"] == "log"
    negative = pd.DataFrame({"epoch": [1, 2], "split": ["train", "train"], "loss": [-1.0, 0.5]})
    assert "type" not in ct.loss_chart(negative).to_dict()["encoding"]["y"]["scale"]  # no log axis below 0
    gates = ct.gate_distribution_chart(ct.gate_weight_frame(records[-1].gate_weights)).to_dict()
    assert gates["encoding"]["row"]["field"] == "expert" and gates["encoding"]["x"]["bin"]["extent"] == [0, 1]
    load = ct.load_chart(ct.load_history_frame(records, "sigmoid")).to_dict()
    assert load["encoding"]["y"]["stack"] == "normalize"
    frame = pd.DataFrame({"x1": [0.0, 1.0], "x2": [1.0, 0.0], "class": ["a", "b"]})
    assert (
        ct.scatter_2d_chart(frame, "x1", "x2", "class", nominal=True).to_dict()["encoding"]["color"]["type"]
        == "nominal"
    )
    assert ct.chart_height("gates", 4) > ct.chart_height("gates", 2)
