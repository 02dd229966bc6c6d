"""AppTest: the Train page's router settings (options shown only where the router reads them, help from the registry,
the expert-choice note, links round-trip, a routed model trains) and the Gates page's routing metrics table."""

from __future__ import annotations

import math

import pytest
from _app_support import TINY, new_app, no_exception, train_until_done
from interpret_helpers import assert_clean, open_page, tiny_run

from kamoe_viz.config import RunConfig
from kamoe_viz.routing_metrics import ROUTING_METRIC_DEFINITIONS, routing_summary
from kamoe_viz.routing_specs import ROUTERS


@pytest.fixture(autouse=True)
def _runs_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("KAMOE_RUNS_DIR", str(tmp_path / "runs"))


def _keys(at) -> set[str]:
    return {w.key for w in [*at.number_input, *at.selectbox, *at.segmented_control] if w.key}


def test_router_options_appear_only_where_the_router_reads_them():
    at = new_app(TINY)
    router = at.selectbox(key="w.model.routing")
    assert list(router.options) == [spec.title for spec in ROUTERS.values()]
    assert ROUTERS["sigmoid_bias"].definition in router.help
    expected = {
        "dense": {"w.model.gate_activation"},
        "topk": {"w.model.top_k", "w.model.gate_activation"},
        "switch": {"w.model.capacity_factor"},
        "expert_choice": {"w.model.capacity_factor"},
        "sigmoid_bias": {"w.model.top_k", "w.model.bias_update_rate"},
        "relu": set(),
    }
    options = {"w.model.top_k", "w.model.gate_activation", "w.model.capacity_factor", "w.model.bias_update_rate"}
    for name, shown in expected.items():
        at.selectbox(key="w.model.routing").set_value(name).run()
        no_exception(at, name)
        assert _keys(at) & options == shown, name
        assert any(ROUTERS[name].definition == c.value for c in at.caption), name
        note = [i.value for i in at.info if "depends on the batch" in i.value]
        assert bool(note) == (name == "expert_choice"), name
        assert not at.error, (name, [e.value for e in at.error])
        assert RunConfig.from_query_params(at.query_params).model.routing == name


def test_routing_and_balance_settings_round_trip_through_the_link():
    query = {
        **TINY,
        "model.routing": "sigmoid_bias",
        "model.top_k": "1",
        "model.bias_update_rate": "0.01",
        "model.shared_experts": "1",
        "train.balance_loss": "0.05",
        "train.z_loss": "0.001",
        "train.objective": "likelihood",
        "train.gate_lr_scale": "5",
    }
    at = new_app(query)
    no_exception(at)
    assert at.selectbox(key="w.model.routing").value == "sigmoid_bias"
    assert at.number_input(key="w.model.bias_update_rate").value == pytest.approx(0.01)
    assert at.number_input(key="w.model.shared_experts").value == 1
    assert at.segmented_control(key="w.train.objective").value == "likelihood"
    assert at.number_input(key="w.train.balance_loss").value == pytest.approx(0.05)
    assert at.number_input(key="w.train.gate_lr_scale").value == pytest.approx(5.0)
    linked, asked = RunConfig.from_query_params(at.query_params), RunConfig.from_query_params(query)
    assert (linked.model, linked.train) == (asked.model, asked.train)
    at.selectbox(key="w.model.routing").set_value("switch").run()  # top_k is not read by switch: dropped to 0
    config = RunConfig.from_query_params(at.query_params)
    assert config.model.routing == "switch" and config.model.top_k == 0


def test_a_switch_model_with_balance_loss_trains_from_the_page():
    at = new_app({**TINY, "model.routing": "switch", "train.balance_loss": "0.01"})
    no_exception(at)
    train_until_done(at)
    run = at.session_state["current_run"]
    assert run.config.model.routing == "switch" and run.config.train.balance_loss == 0.01
    history = run.result.history
    assert all(math.isfinite(v) for v in history["balance_loss"]), history


def test_gates_page_shows_the_routing_metrics_with_their_definitions():
    run = tiny_run("linear", "mlp", "softmax")
    at = open_page("pages/gates.py", run)
    assert_clean(at)
    assert any(s.value == "Routing metrics" for s in at.subheader)
    table = next(t.value for t in at.table if "definition" in t.value.columns)  # a table whose text wraps
    assert set(table["definition"]) <= set(ROUTING_METRIC_DEFINITIONS.values())
    assert "NMI vs regimes" in set(table["metric"])  # the toy data know their regimes
    # the same rows as the library's summary: Gates and Compare read one definition
    from kamoe_viz.interpret import gates as gt

    wide = gt.gate_weights_frame(run.model, run.dataset, "test")
    cols = [c for c in wide.columns if c.startswith("expert ")]
    expected = routing_summary(wide[cols].to_numpy(), wide["regime"].to_numpy(), run.config.train.batch_size)
    shown = dict(zip(table["metric"], table["value"]))
    assert shown["NMI vs regimes"] == pytest.approx(expected["nmi"])
    assert shown["Gini of load"] == pytest.approx(expected["gini"])
