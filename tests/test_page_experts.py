"""AppTest: the Experts page without a run, for each gate family, and for classification."""

from __future__ import annotations

import pytest
from interpret_helpers import assert_clean, open_page, rendered_charts, tiny_run

from kamoe_viz.interpret import experts

PAGE = "pages/experts.py"


def test_without_a_run_it_says_how_to_get_one():
    at = open_page(PAGE)
    assert_clean(at)
    assert any("No model trained yet" in i.value for i in at.info)


@pytest.mark.parametrize("gate,activation", [("linear", "sigmoid"), ("grn", "softmax"), ("grkan", "softmax")])
def test_each_gate_family(gate, activation):
    run = tiny_run(gate, "mlp", activation)
    at = open_page(PAGE, run)
    assert_clean(at, gate)
    assert len(rendered_charts(at)) >= 4  # contingency, errors, output vs target, ablation
    shown = {m.label: m.value for m in at.metric}
    expected = experts.agreement(experts.routing_table(run.model, run.dataset, "test"))
    assert shown["NMI"] == f"{expected['nmi']:.2f}" and shown["ARI"] == f"{expected['ari']:.2f}"
    text = " ".join(c.value for c in at.caption)
    assert "zeroed" in text and (("renormalised" in text) == (activation == "softmax") or "only zeroing" in text)
    at.segmented_control(key="experts_split").set_value("train").run()
    assert_clean(at, "train split")


def test_classification_run():
    run = tiny_run("grkan", "kan", "softmax", "classification")
    at = open_page(PAGE, run)
    assert_clean(at)
    assert len(rendered_charts(at)) >= 4
    assert any("agreement" in m.value for m in at.markdown)


def test_table_headers_read_as_words():
    from kamoe_viz_app.interpret_ui import readable_header as header

    assert header("rmse_change") == "RMSE change" and header("r2_change") == "R² change"
    assert header("mean_abs_output_change") == "mean |output change|"
    assert header("top1_share") == "top-1 share" and header("mean_weight") == "mean weight"
