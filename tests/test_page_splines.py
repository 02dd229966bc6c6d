"""AppTest: the Splines page without a run, for each gate family, grid update, edge detail and symbolic fit."""

from __future__ import annotations

import pytest
from interpret_helpers import assert_clean, open_page, rendered_charts, run_cache, tiny_run

PAGE = "pages/splines.py"


def test_without_a_run_it_says_how_to_get_one():
    at = open_page(PAGE)
    assert_clean(at)
    assert any("No model trained yet" in i.value for i in at.info)
    assert not rendered_charts(at)


@pytest.mark.parametrize("gate", ["grkan", "grn", "linear"])
def test_kan_experts_are_shown_for_every_gate(gate):
    run = tiny_run(gate, "kan", "sigmoid")
    at = open_page(PAGE, run)
    assert_clean(at, gate)
    assert len(rendered_charts(at)) >= 3  # importance bars, small multiples, one edge large
    layers = at.selectbox(key="spl_layer").options
    assert any("experts.layer1" in o for o in layers)
    assert any("gate.kan1" in o for o in layers) == (gate == "grkan")
    if gate != "grkan":
        assert any("has no splines" in i.value for i in at.info)


def test_gate_without_splines_offers_the_switch_to_grkan():
    run = tiny_run("grn", "mlp", "softmax")
    at = open_page(PAGE, run)
    assert_clean(at)
    assert any("has no splines" in w.value for w in at.warning)
    assert not rendered_charts(at)
    switch = [b for b in at.button if "GRKAN" in b.label]
    assert switch
    switch[0].click().run()
    assert at.session_state["run_config"]["model"]["gate"] == "grkan"
    assert run.config.model.gate == "grn"  # the trained run keeps its own settings


def test_controls_results_are_cached_and_grid_update_can_be_kept():
    run = tiny_run("grkan", "mlp", "sigmoid")
    at = open_page(PAGE, run)
    assert_clean(at)
    cached = dict(run_cache(at, run))
    assert {"spline_importance", "spline_inputs", "spline_coverage"} <= set(cached)
    at.slider(key="spl_threshold").set_value(0.0).run()
    at.segmented_control(key="spl_parts").set_value("base + spline").run()
    assert_clean(at, "controls")
    for name in ("spline_importance", "spline_inputs"):
        assert run_cache(at, run)[name] is cached[name]  # not recomputed on reruns
    at.toggle(key="spl_fit_on").set_value(True).run()
    assert_clean(at, "symbolic fit")
    assert any("Best:" in m.value for m in at.markdown)
    assert any("outside the spline grid" in w.value for w in at.warning)  # this model's gate inputs leave the grid
    update = [b for b in at.button if b.label.startswith("Update grid")]
    update[0].click().run()
    assert_clean(at, "grid update")
    assert any("train_loss" in str(df.value["metric"].tolist()) for df in at.dataframe if "metric" in df.value)
    [b for b in at.button if b.label == "Use the updated model"][0].click().run()
    assert_clean(at, "after keeping the update")
    updated = at.session_state["current_run"]
    assert updated is not run and updated.run_id is None and updated.model is not run.model
    assert rendered_charts(at)
