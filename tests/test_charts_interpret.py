"""Interpretation charts without Streamlit: every builder gives a valid Vega-Lite spec with the key encodings and
tooltips; PNG/SVG export works offline."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from interpret_helpers import tiny_model

from kamoe_viz import charts as ch
from kamoe_viz.interpret import attribution, experts, gates, grids, splines, symbolic


def _spec(chart) -> dict:
    spec = chart.to_dict(validate=True)
    assert spec["$schema"].startswith("https://vega.github.io/schema/vega-lite/")
    return spec


def _fields(spec) -> set[str]:
    """Every field named in an encoding anywhere in the spec."""
    found: set[str] = set()

    def walk(node):
        if isinstance(node, dict):
            if isinstance(node.get("field"), str):
                found.add(node["field"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk({k: v for k, v in spec.items() if k != "datasets"})
    return found


def _has_tooltips(spec) -> bool:
    return '"tooltip"' in json.dumps({k: v for k, v in spec.items() if k != "datasets"})


@pytest.fixture(scope="module")
def kan_model():
    model, data = tiny_model("grkan", "kan", "softmax", "classification")
    return model, data, splines.layer_inputs(model, data, max_rows=300)


def test_edge_small_multiples_and_detail(kan_model):
    model, data, inputs = kan_model
    imp = splines.edge_importance(model, data, inputs)
    layer = "gate.kan1"
    li = imp[imp["layer"] == layer]
    top = li.nsmallest(6, "rank")
    edges = list(zip(top["input"], top["output"]))
    curves = splines.edge_curves(model, data, layer, edges, inputs, n_points=30)
    cov = grids.grid_coverage_table(model, data, inputs)
    knots = splines.knot_table(model, layer)
    hist = splines.input_histograms(model, data, layer, inputs=inputs)
    frame = ch.edge_frame(curves, li, knots, cov[cov["layer"] == layer], hist, parts=("total", "base", "spline"))
    assert {"curve", "hist", "knot"} <= set(frame["kind"])
    assert frame.loc[frame["kind"] == "curve", "part"].nunique() == 3
    spec = _spec(ch.edge_grid_chart(frame))
    assert spec["facet"]["field"] == "edge" and spec["resolve"]["scale"]["y"] == "independent"
    assert {"x", "y", "relative", "part", "x2"} <= _fields(spec) and _has_tooltips(spec)
    one = curves[curves["edge"] == curves["edge"].iloc[0]]
    fits = symbolic.edge_symbolic_fit(one)
    fit = pd.DataFrame({"x": one["x"], "y": symbolic.evaluate_fit(fits.iloc[0], one["x"].to_numpy())})
    detail = ch.edge_frame(one, li, knots, cov[cov["layer"] == layer], hist, fit=fit)
    assert (detail["kind"] == "fit").sum() == len(one)
    spec = _spec(ch.edge_detail_chart(detail, title="edge"))
    assert len(spec["layer"]) == 5 and _has_tooltips(spec)
    for chart in (ch.importance_bars(li, 0.2), ch.coverage_chart(cov), ch.symbolic_fit_chart(fits)):
        assert _has_tooltips(_spec(chart))
    with pytest.raises(ValueError, match="parts"):
        ch.edge_frame(curves, li, knots, cov, hist, parts=("everything",))


def test_gate_charts(kan_model):
    model, data, _ = kan_model
    wide = gates.gate_weights_frame(model, data)
    long = gates.weights_long(wide)
    loads = gates.load_table(wide[[f"expert {k}" for k in range(3)]].to_numpy(), "softmax")
    grid = gates.region_map(model, data, resolution=15)
    points = gates.region_points(model, data, max_rows=40)
    charts = {
        "hist": ch.weight_histogram_chart(long),
        "violin": ch.weight_violin_chart(long),
        "load": ch.load_chart(loads),
        "winner": ch.region_winner_chart(grid, points, "x0", "x1"),
        "weights": ch.region_weight_charts(grid, points, "x0", "x1"),
        "pdp": ch.partial_dependence_chart(gates.partial_dependence(model, data, n_values=4, max_rows=20)),
    }
    for name, chart in charts.items():
        spec = _spec(chart)
        assert _has_tooltips(spec), name
    assert {"weight", "expert"} <= _fields(_spec(charts["hist"]))
    assert {"winner", "winning_weight", "x_lo", "y_hi", "regime"} <= _fields(_spec(charts["winner"]))
    weights = _spec(charts["weights"])
    assert len(weights["concat"]) == 3 and weights["columns"] == 3  # one panel per expert, three to a row
    assert {"mean weight", "top-1 share"} <= set(charts["load"].layer[0].data["measure"])


def test_expert_and_sequence_charts():
    model, data = tiny_model("grn", "kan", "sigmoid", "regression", True)
    over = gates.gates_over_time(model, data)
    spec = _spec(ch.gates_over_time_chart(over))
    assert len(spec["vconcat"]) == 2 and "regime" in _fields(spec)
    table = experts.routing_table(model, data)
    for chart in (
        ch.contingency_chart(experts.contingency(table)),
        ch.expert_error_chart(experts.expert_errors(data, table)),
        ch.expert_vs_target_chart(experts.expert_vs_target(table, 60)),
        ch.ablation_chart(experts.ablation(model, data)),
    ):
        assert _has_tooltips(_spec(chart))
    assert {"share_of_truth", "count"} <= _fields(_spec(ch.contingency_chart(experts.contingency(table))))
    assert "harm" in _fields(_spec(ch.ablation_chart(experts.ablation(model, data))))


def test_classification_output_chart_and_attributions(kan_model):
    model, data, inputs = kan_model
    table = experts.routing_table(model, data)
    assert _has_tooltips(_spec(ch.expert_vs_target_chart(experts.expert_vs_target(table, 50), task="classification")))
    attr, _ = attribution.global_attributions(model, data, max_rows=20, n_steps=8)
    spline_inputs = splines.input_importance(splines.edge_importance(model, data, inputs))
    spec = _spec(ch.side_by_side_chart(attr, spline_inputs, "prediction", "experts.layer1 (all experts)"))
    assert len(spec["hconcat"]) == 2 and {"mean_abs", "method", "importance"} <= _fields(spec)
    assert len(_spec(ch.side_by_side_chart(attr, None, "prediction"))["hconcat"]) == 1
    row = attribution.row_attributions(model, data, 0, n_steps=8)
    assert "attribution" in _fields(_spec(ch.row_attribution_chart(row[row["target"] == "prediction"])))


def test_large_region_maps_convert_without_the_row_limit(kan_model):
    model, data, _ = kan_model
    grid = gates.region_map(model, data, resolution=60)  # 60 × 60 cells × 3 experts > Altair's 5000-row guard
    spec = ch.chart_spec(ch.region_weight_charts(grid, None, "x0", "x1"))
    assert sum(len(rows) for rows in spec["datasets"].values()) >= 60 * 60 * 3
    assert ch.chart_bytes(spec, "svg").startswith(b"<svg")


def test_export_png_and_svg():
    chart = ch.load_chart(gates.load_table([[0.2, 0.8], [0.6, 0.4]], "softmax"))
    png = ch.chart_bytes(chart, "png", scale=1)
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    svg = ch.chart_bytes(chart, "svg")
    assert b"<svg" in svg[:200]
    with pytest.raises(ValueError, match="png, svg"):
        ch.chart_bytes(chart, "gif")
