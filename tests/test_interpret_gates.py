"""Gate statistics: definitions hold on hand-made weights, and every view uses the model's real gate weights."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from interpret_helpers import tiny_model

from kamoe_viz.errors import ValidationError
from kamoe_viz.interpret import gates as gt
from kamoe_viz.interpret._common import raw_to_scaled


def test_softmax_load_is_the_mean_weight_and_shares_sum_to_one():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(500, 4))
    w = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    table = gt.load_table(w, "softmax")
    assert table["mean_weight"].sum() == pytest.approx(1.0)
    assert np.allclose(table["normalised_share"], table["mean_weight"])
    assert table["top1_share"].sum() == pytest.approx(1.0)
    assert np.allclose(table["top1_share"], np.bincount(w.argmax(1), minlength=4) / 500)


def test_sigmoid_reports_mean_weight_and_shares():
    w = np.array([[0.9, 0.8, 0.1], [0.7, 0.95, 0.2], [0.6, 0.5, 0.3], [0.99, 0.1, 0.05]])
    table = gt.load_table(w, "sigmoid").set_index("expert")
    assert table["mean_weight"].tolist() == pytest.approx(w.mean(0).tolist())
    assert table["normalised_share"].sum() == pytest.approx(1.0)
    assert table["top1_share"].tolist() == pytest.approx([0.75, 0.25, 0.0])


def test_dead_and_always_on_flags():
    n = 1000
    w = np.column_stack([np.full(n, 0.97), np.full(n, 0.02), np.full(n, 0.01)])
    table = gt.load_table(w, "softmax").set_index("expert")
    assert table.loc["expert 0", "status"] == "always on"
    assert table.loc["expert 2", "status"] == "dead" and table.loc["expert 1", "status"] == "dead"
    balanced = gt.load_table(np.eye(3)[np.arange(n) % 3], "softmax")
    assert (balanced["status"] == "active").all()
    sig = gt.load_table(np.column_stack([np.full(n, 0.95), np.full(n, 0.97)]), "sigmoid").set_index("expert")
    assert sig.loc["expert 0", "always_on"]  # never wins, but its weight is above 0.9 everywhere


def test_routing_entropy_bounds():
    assert np.allclose(gt.routing_entropy(np.eye(3)), 0.0)
    assert np.allclose(gt.routing_entropy(np.full((4, 3), 0.4)), 1.0)
    with pytest.raises(ValidationError):
        gt.load_table(np.eye(3), "relu")


@pytest.mark.parametrize("case", [("grkan", "mlp", "sigmoid"), ("grn", "mlp", "softmax"), ("linear", "kan", "softmax")])
def test_weights_frame_is_the_models_gate_output(case):
    model, data = tiny_model(*case)
    wide = gt.gate_weights_frame(model, data, "train", max_rows=None)
    with torch.no_grad():
        expected = model.gate_weights(torch.as_tensor(data.X_train)).numpy()
    cols = [f"expert {e}" for e in range(3)]
    assert np.allclose(wide[cols].to_numpy(), expected, atol=1e-6)
    assert (wide["winner"].to_numpy() == expected.argmax(1)).all()
    assert (wide["regime"].to_numpy() == data.regimes_train).all()
    long = gt.weights_long(wide)
    assert len(long) == 3 * len(wide)
    summary = gt.gate_summary(model, data)
    assert 0 <= summary["mean_routing_entropy"] <= 1 and 0 <= summary["load_balance_entropy"] <= 1
    assert summary["activation"] == case[2]


def test_region_map_evaluates_the_gate_on_the_raw_plane():
    model, data = tiny_model("grkan", "mlp", "softmax")
    grid = gt.region_map(model, data, resolution=12)
    assert len(grid) == 12 * 12 * 3
    raw = data.unscale_X(data.X_train)
    assert grid["x"].min() < raw[:, 0].min() and grid["y"].max() > raw[:, 1].max()
    cell = grid.iloc[3 * 40]
    point = raw_to_scaled(data, np.array([[cell["x"], cell["y"]]])).astype(np.float32)
    with torch.no_grad():
        expected = model.gate_weights(torch.as_tensor(point)).numpy()[0]
    got = grid[(grid["x"] == cell["x"]) & (grid["y"] == cell["y"])].sort_values("expert")["weight"].to_numpy()
    assert np.allclose(got, expected, atol=1e-5)
    assert cell["winner"] == f"expert {expected.argmax()}"
    points = gt.region_points(model, data, max_rows=50)
    assert len(points) == 50 and {"x", "y", "winner", "target", "regime"} <= set(points.columns)
    with pytest.raises(ValidationError, match="features"):
        gt.region_map(model, data, features=(0, 0))


def test_gates_over_time_follows_the_split_order():
    model, data = tiny_model("grn", "kan", "sigmoid", "regression", True)
    frame = gt.gates_over_time(model, data, "test")
    n = len(data.X_test)
    assert len(frame) == 3 * n and frame["t"].max() == n - 1
    with torch.no_grad():
        expected = model.gate_weights(torch.as_tensor(data.X_test)).numpy()
    assert np.allclose(frame.pivot(index="t", columns="expert", values="weight").to_numpy(), expected, atol=1e-6)
    assert set(frame["regime"]) <= {"calm", "wave"}
    flat, flat_data = tiny_model("grkan", "mlp", "sigmoid")
    with pytest.raises(ValidationError, match="sequence"):
        gt.gates_over_time(flat, flat_data)


def test_partial_dependence_matches_a_manual_computation():
    model, data = tiny_model("grkan", "mlp", "sigmoid")
    pdp = gt.partial_dependence(model, data, n_values=5, max_rows=40)
    assert set(pdp["feature"]) == {"x0", "x1"} and len(pdp) == 2 * 5 * 3
    rows = pdp[pdp["feature"] == "x1"]
    value = sorted(rows["value"].unique())[2]
    from kamoe_viz.interpret._common import reference_set

    X, _, _, _ = reference_set(data, "train", 40, seed=2)
    X = X.copy()
    X[:, 1] = raw_to_scaled(data, np.array([value]), [1])[0]
    with torch.no_grad():
        expected = model.gate_weights(torch.as_tensor(X)).numpy().mean(0)
    got = rows[rows["value"] == value].sort_values("expert")["weight"].to_numpy()
    assert np.allclose(got, expected, atol=1e-5)


def test_the_specialisation_hint_names_what_to_try():
    from kamoe_viz.config import TrainConfig
    from kamoe_viz.interpret.gates import SPECIALISED_NMI, specialisation_hint

    assert specialisation_hint(float("nan"), TrainConfig()) is None  # no known regimes: nothing to say
    assert specialisation_hint(SPECIALISED_NMI, TrainConfig()) is None
    mse = specialisation_hint(0.41, TrainConfig())
    assert "NMI 0.41" in mse and "mixture likelihood" in mse
    single = specialisation_hint(0.6, TrainConfig(objective="likelihood"))
    assert "restarts" in single and "mixture likelihood" not in single
    assert "another seed" in specialisation_hint(0.6, TrainConfig(objective="likelihood", restarts=8))
