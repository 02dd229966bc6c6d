"""Routing as a Compare axis: planned variants, their configs, metric columns in the table and CSV, the verdict,
the CLI's --routings and the Compare page's router choice."""

from __future__ import annotations

import csv

import _app_support
import numpy as np
import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

from kamoe_viz import compare
from kamoe_viz.compare.tables import routing_verdict
from kamoe_viz.compare.worker import ROUTING_COLUMNS
from kamoe_viz.config import RunConfig
from kamoe_viz.errors import ValidationError
from kamoe_viz.labels import in_variant_labels, variant_label

TINY = {
    "data": {"options": {"n_samples": 300}},
    "model": {"n_experts": 2, "expert_hidden": [4]},
    "train": {"epochs": 2, "early_stopping": 0},
}


def test_plan_crosses_gates_with_routers():
    base = RunConfig.from_dict(TINY)
    specs = compare.plan(base, gates="linear,grn", seeds=1, routings="dense,switch,sigmoid_bias")
    variants = [s.variant for s in specs]
    assert variants == [
        "standard",
        "linear/dense",
        "linear/switch",
        "linear/sigmoid_bias",
        "grn/dense",
        "grn/switch",
        "grn/sigmoid_bias",
    ]
    by_name = {s.variant: s.config.model for s in specs}
    assert by_name["grn/switch"].routing == "switch" and by_name["grn/switch"].gate == "grn"
    assert by_name["linear/sigmoid_bias"].top_k == 1  # a router that needs k gets one
    assert by_name["linear/dense"].top_k == 0 and by_name["linear/dense"].routing == "dense"
    assert by_name["standard"].kind == "standard"
    with pytest.raises(ValidationError, match="routings: got 'hash'"):
        compare.plan(base, gates="linear", seeds=1, routings="dense,hash")


def test_routing_verdict_names_the_best_match_and_collapse():
    table = pd.DataFrame(
        {
            "variant": ["a", "a", "b", "b"],
            "kind": "moe",
            "regime_nmi": [0.9, 0.8, 0.2, 0.1],
            "min_load": [0.3, 0.3, 0.01, 0.0],
            "load_cv": [0.1, 0.1, 1.2, 1.3],
        }
    )
    line = routing_verdict(table, ["a", "b"])
    assert "best with a (mean NMI 0.85, min load 0.30)" in line and "collapsed" in line and line.endswith("b.")


def test_variant_labels_name_the_router():
    assert variant_label("grkan/switch") == "GRKAN gate · Switch (top-1, capacity)"
    assert variant_label("grkan") == "GRKAN gate"
    assert in_variant_labels("grkan/expert_choice beats grn") == "GRKAN gate · Expert choice beats GRN gate"


def test_cli_compare_routings_writes_the_metric_columns(tmp_path, capsys):
    from kamoe_viz.cli import main

    out = tmp_path / "runs.csv"
    code = main(
        [
            "compare",
            "--gates",
            "linear",
            "--routings",
            "dense,switch",
            "--seeds",
            "2",
            "--epochs",
            "2",
            "--experts",
            "2",
            "--hidden",
            "4",
            "--option",
            "n_samples=300",
            "--no-standard",
            "--quiet",
            "--out",
            str(out),
        ]
    )
    assert code == 0
    with open(out, newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert {r["variant"] for r in rows} == {"linear/dense", "linear/switch"}
    assert {r["routing"] for r in rows} == {"dense", "switch"}
    for row in rows:
        for column in (*ROUTING_COLUMNS, "regime_nmi", "gate_entropy"):
            assert np.isfinite(float(row[column])), (column, row)
        assert 0.0 <= float(row["min_load"]) <= 0.5
    printed = capsys.readouterr().out
    assert "min_load" in printed and "Experts match the regimes best with linear/" in printed


def test_compare_page_runs_routers_side_by_side():
    at = AppTest.from_file(_app_support.APP, default_timeout=240)
    at.query_params["data.options.n_samples"] = "300"
    at = at.switch_page("pages/compare.py").run()
    at.multiselect(key="cmp.gates").set_value(["linear"])
    at.multiselect(key="cmp.routings").set_value(["dense", "expert_choice"])
    at.checkbox(key="cmp.standard").set_value(False)
    at.number_input(key="cmp.seeds").set_value(2)
    at.number_input(key="cmp.epochs").set_value(2)
    at.number_input(key="cmp.n_experts").set_value(2)
    at.text_input(key="cmp.hidden").set_value("4")
    at.button(key="cmp.run").click().run()
    assert not at.exception and not at.error, [e.value for e in [*at.exception, *at.error]]
    result = at.session_state["compare_result"]
    assert set(result.table["variant"]) == {"linear/dense", "linear/expert_choice"}
    summary = next(df.value for df in at.dataframe if "min_load" in df.value.columns and "mean" in df.value.columns)
    assert len(summary) == 2 and summary["min_load"].notna().all()
    assert any("Experts match the regimes best" in m.value for m in [*at.info, *at.success])
