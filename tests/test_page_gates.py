"""AppTest: the Gates page without a run and for each gate family, 2-D maps and sequences."""

from __future__ import annotations

import pytest
from interpret_helpers import assert_clean, open_page, rendered_charts, run_cache, tiny_run

PAGE = "pages/gates.py"


def test_without_a_run_it_says_how_to_get_one():
    at = open_page(PAGE)
    assert_clean(at)
    assert any("No model trained yet" in i.value for i in at.info)


def test_a_model_training_in_another_tab_is_pointed_to():
    from kamoe_viz.config import RunConfig
    from kamoe_viz.data import load_dataset
    from kamoe_viz.training.live import LiveJob

    config = RunConfig.from_query_params(
        {
            "model.expert_hidden": "8",
            "train.epochs": "5000",
            "train.early_stopping": "0",
            "data.options.n_samples": "600",
        }
    )
    elsewhere = LiveJob.start(config, load_dataset(config.data), with_baseline=False)
    elsewhere.start_background(0.05)  # as another browser session's Train page does
    try:
        at = open_page(PAGE)
        assert_clean(at)
        text = " ".join(i.value for i in at.info)
        assert "training in the background" in text and "Watch it here" in text
        assert "No model trained yet" not in text
    finally:
        elsewhere.request_stop()
        assert elsewhere.wait(60)
    at = open_page(PAGE)  # once it has stopped, the usual advice again
    assert any("No model trained yet" in i.value for i in at.info)


@pytest.mark.parametrize("gate,activation", [("linear", "softmax"), ("grn", "sigmoid"), ("grkan", "sigmoid")])
def test_each_gate_family(gate, activation):
    run = tiny_run(gate, "mlp", activation)
    at = open_page(PAGE, run)
    assert_clean(at, gate)
    # load, histogram, winner map, per-expert maps, partial dependence
    assert len(rendered_charts(at)) >= 5
    labels = [m.label for m in at.metric]
    assert "Mean routing entropy" in labels and "Load balance" in labels
    text = " ".join(c.value for c in at.caption)
    assert ("mean weight is its share" in text) if activation == "softmax" else ("top-1 share" in text)
    rows = at.segmented_control(key="gates_split")  # held-out rows by default, as on the Experts page
    assert rows.value == "test" and list(rows.options) == ["train", "val", "test"]
    assert "gates_summary:test" in run_cache(at, run)
    cached = run_cache(at, run)["gates_region:(0, 1)"]
    at.segmented_control(key="gates_style").set_value("violin").run()
    assert_clean(at, "violin")
    assert run_cache(at, run)["gates_region:(0, 1)"] is cached


def test_sequences_show_gates_over_time():
    run = tiny_run("grn", "kan", "sigmoid", "regression", True)
    at = open_page(PAGE, run)
    assert_clean(at)
    assert any(s.value == "Gate weights over time" for s in at.subheader)
    assert not any(s.value == "Where each expert wins" for s in at.subheader)
    assert len(rendered_charts(at)) >= 4


def test_a_run_whose_experts_share_the_regimes_gets_advice():
    from kamoe_viz import routing_metrics as rm
    from kamoe_viz.interpret import gates as gt

    run = tiny_run("linear", "mlp", "softmax")  # trained on the MSE: the experts share the regimes
    wide = gt.gate_weights_frame(run.model, run.dataset, "test", 2000)
    nmi = rm.routing_summary(
        wide[[c for c in wide.columns if c.startswith("expert ")]].to_numpy(), wide["regime"].to_numpy()
    )["nmi"]
    assert nmi < gt.SPECIALISED_NMI
    at = open_page(PAGE, run)
    assert_clean(at)
    assert any(f"NMI {nmi:.2f}" in i.value and "mixture likelihood" in i.value for i in at.info), [
        i.value for i in at.info
    ]
