"""AppTest: the Attribution page without a run, for each gate family; baseline, target and row controls."""

from __future__ import annotations

import pytest
from interpret_helpers import assert_clean, open_page, rendered_charts, run_cache, tiny_run

PAGE = "pages/attribution.py"


def test_without_a_run_it_says_how_to_get_one():
    at = open_page(PAGE)
    assert_clean(at)
    assert any("No model trained yet" in i.value for i in at.info)


@pytest.mark.parametrize("gate,expert", [("linear", "mlp"), ("grn", "kan"), ("grkan", "mlp")])
def test_each_gate_family(gate, expert):
    run = tiny_run(gate, expert, "sigmoid")
    at = open_page(PAGE, run)
    assert_clean(at, gate)
    assert any("not the spline importances" in i.value for i in at.info)
    assert len(rendered_charts(at)) >= 2  # global side by side, one row
    has_splines = gate == "grkan" or expert == "kan"
    assert ("attr_layer" in [s.key for s in at.selectbox]) == has_splines
    if not has_splines:
        assert any("no KAN layers" in c.value for c in at.caption)
    first = run_cache(at, run)["attr_global:mean"]
    at.selectbox(key="attr_target").set_value("gate weight: expert 0").run()
    at.number_input(key="attr_row").set_value(5).run()
    assert_clean(at, "target/row")
    assert run_cache(at, run)["attr_global:mean"] is first  # switching target or row does not recompute
    at.radio(key="attr_baseline").set_value("zeros").run()
    assert_clean(at, "zeros baseline")
    assert "attr_global:zeros" in run_cache(at, run)
