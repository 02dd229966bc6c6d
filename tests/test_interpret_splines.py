"""Spline interpretation on tiny trained models: curves are the layer's own function, importance is what it says,
coverage and histograms match the data, the grid update works on a copy and reports before/after."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from interpret_helpers import tiny_model

from kamoe_viz.errors import GridUpdateError, ValidationError
from kamoe_viz.interpret import grids as gr
from kamoe_viz.interpret import splines as sp

CASES = [
    ("grkan", "mlp", "sigmoid", "regression", False),
    ("grkan", "kan", "softmax", "classification", False),
    ("linear", "kan", "sigmoid", "regression", True),
]


@pytest.fixture(scope="module", params=CASES, ids=lambda c: "-".join(map(str, c)))
def trained(request):
    model, data = tiny_model(*request.param)
    return model, data, sp.layer_inputs(model, data, max_rows=300)


def test_layer_table_lists_every_kan_layer(trained):
    model, data, _ = trained
    table = sp.kan_layer_table(model, data)
    assert list(table["layer"]) == [ref.name for ref in model.kan_layers()]
    assert (table["edges"] == table["inputs"] * table["outputs"]).all()
    if model.config.gate == "grkan":
        assert {"gate.kan1", "gate.kan2"} <= set(table["layer"])


def test_edge_curves_sum_to_the_layers_output(trained):
    """Summing φ_ij over inputs i at the grid points gives exactly what the layer computes for those points."""
    model, data, inputs = trained
    for ref in model.kan_layers():
        layer = ref.layer
        curves = sp.edge_curves(model, data, ref.name, inputs=inputs, n_points=25)
        assert len(curves) == 25 * layer.in_features * layer.out_features
        assert np.allclose(curves["total"], curves["base"] + curves["spline"])
        first = curves[curves["output"] == 0].sort_values(["input", "x"])
        points = first["x"].to_numpy().reshape(layer.in_features, 25).T  # (G, in): row g = g-th point per input
        summed = curves.groupby(["output", "input"], sort=True)["total"].apply(np.asarray)
        total = np.stack(
            [
                np.sum(np.stack([summed[(j, i)] for i in range(layer.in_features)]), axis=0)
                for j in range(layer.out_features)
            ],
            axis=1,
        )  # (G, out)
        with torch.no_grad():
            expected = layer(torch.tensor(points, dtype=torch.float32)).numpy()
        assert np.allclose(total, expected, atol=1e-4), ref.name


def test_curves_span_the_data(trained):
    model, data, inputs = trained
    ref = model.kan_layers()[0]
    curves = sp.edge_curves(model, data, ref.name, edges=[(0, 0)], inputs=inputs)
    seen = inputs[ref.name][:, 0]
    assert curves["x"].min() <= seen.min() and curves["x"].max() >= seen.max()


def test_importance_is_mean_absolute_edge_value(trained):
    model, data, inputs = trained
    importance = sp.edge_importance(model, data, inputs)
    for ref in model.kan_layers():
        rows = importance[importance["layer"] == ref.name]
        assert len(rows) == ref.layer.in_features * ref.layer.out_features
        x = torch.as_tensor(inputs[ref.name])
        brute = ref.layer.edge_functions(x).total.abs().mean(0).numpy()  # (out, in)
        got = rows.set_index(["output", "input"])["importance"]
        for (j, i), value in got.items():
            assert value == pytest.approx(float(brute[j, i]), rel=1e-4, abs=1e-7)
        assert rows["relative"].max() == pytest.approx(1.0)
        assert sorted(rows["rank"]) == list(range(1, len(rows) + 1))
        assert (rows.sort_values("rank")["importance"].diff().dropna() <= 1e-12).all()


def test_input_importance_sums_edges(trained):
    model, data, inputs = trained
    importance = sp.edge_importance(model, data, inputs)
    per_input = sp.input_importance(importance)
    for layer, rows in per_input.groupby("layer"):
        assert rows["share"].sum() == pytest.approx(1.0)
        assert rows["importance"].sum() == pytest.approx(importance[importance["layer"] == layer]["importance"].sum())


def test_knots_and_grid_coverage(trained):
    model, data, inputs = trained
    coverage = gr.grid_coverage_table(model, data, inputs, threshold=0.1)
    for ref in model.kan_layers():
        layer = ref.layer
        knots = sp.knot_table(model, ref.name)
        assert len(knots) == layer.in_features * (layer.grid_size + 2 * layer.spline_order + 1)
        assert knots.groupby("input")["active"].sum().eq(layer.grid_size + 1).all()
        rows = coverage[coverage["layer"] == ref.name].set_index("input")
        seen = inputs[ref.name]
        for i in range(layer.in_features):
            low, high = rows.loc[i, "grid_low"], rows.loc[i, "grid_high"]
            outside = np.mean((seen[:, i] < low) | (seen[:, i] > high))
            assert rows.loc[i, "outside_fraction"] == pytest.approx(outside, abs=1e-6)
            assert rows.loc[i, "warn"] == (outside > 0.1)


def test_histograms_count_every_reference_row(trained):
    model, data, inputs = trained
    ref = model.kan_layers()[0]
    hist = sp.input_histograms(model, data, ref.name, inputs=inputs, bins=12)
    counts = hist.groupby("input")["count"].sum()
    assert (counts == len(inputs[ref.name])).all()
    assert hist.groupby("input")["fraction"].sum().apply(lambda v: v == pytest.approx(1.0)).all()


def test_grid_update_on_a_copy_covers_the_data_and_reports(trained):
    model, data, _ = trained
    before = {k: v.clone() for k, v in model.state_dict().items()}
    updated, report = gr.update_grids(model, data)
    assert updated is not model
    for key, value in model.state_dict().items():  # the given model is untouched
        assert torch.equal(value, before[key]), key
    assert {"train_loss", "val_loss"} <= set(report["metric"])
    assert np.isfinite(report[["before", "after"]].to_numpy()).all()
    assert np.allclose(report["change"], report["after"] - report["before"])
    first = updated.kan_layers()[0].name  # the first layer's inputs do not move with the update
    cover = gr.grid_coverage_table(updated, data, sp.layer_inputs(updated, data, max_rows=5000))
    assert cover.loc[cover["layer"] == first, "outside_fraction"].max() < 0.01


def test_grid_update_refuses_models_without_splines():
    model, data = tiny_model("linear", "mlp", "softmax")
    with pytest.raises(GridUpdateError, match="no KAN layers"):
        gr.update_grids(model, data)
    assert sp.edge_importance(model, data).empty


def test_unknown_layer_names_the_allowed_ones():
    model, data = tiny_model("grkan", "mlp", "sigmoid")
    with pytest.raises(ValidationError, match="gate.kan1"):
        sp.edge_curves(model, data, "nope")
    with pytest.raises(ValidationError, match="edge"):
        sp.edge_curves(model, data, "gate.kan2", edges=[(0, 99)])


def test_shared_experts_kan_layers_are_listed_and_see_their_real_inputs():
    """Shared (always-on) KAN experts are part of kan_layers(), so the Splines page can show them."""
    from kamoe_viz.config import DataConfig, ModelConfig
    from kamoe_viz.data import load_dataset
    from kamoe_viz.nn import build_model

    data = load_dataset(DataConfig(name="regimes", options={"n_samples": 200}))
    torch.manual_seed(0)
    model = build_model(ModelConfig(expert="kan", n_experts=2, expert_hidden=(4, 3), shared_experts=2), data).eval()
    refs = {ref.name: ref for ref in model.kan_layers()}
    shared = [name for name, ref in refs.items() if ref.shared]
    assert shared == ["shared.layer1 (all shared)", "shared0.layer2", "shared1.layer2"]
    assert refs["shared.layer1 (all shared)"].layer is model.shared.first
    assert refs["shared1.layer2"].layer is model.shared.deeper[1][0] and refs["shared1.layer2"].expert == 1
    inputs = model.kan_layer_inputs(torch.as_tensor(data.X_train[:50]))
    assert set(inputs) == set(refs)
    with torch.no_grad():  # what shared expert 1's second layer sees: its slice of the first layer's output
        first = model.shared.first(model.scaled_input(torch.as_tensor(data.X_train[:50])))
    torch.testing.assert_close(inputs["shared1.layer2"], first.view(50, 2, 4)[:, 1])
    table = sp.kan_layer_table(model, data)
    assert set(table.loc[table["layer"].isin(shared), "part"]) == {"shared experts"}
    importance = sp.edge_importance(model, data, max_rows=100)
    names = importance.loc[importance["layer"] == "shared0.layer2", "output_name"]
    assert len(names) == 3 * 4 and names.str.startswith("s0·").all()
    assert (importance.loc[importance["layer"].isin(shared), "expert"] == -1).all()
