"""AppTest: the shell renders every page with no run; shareable links restore settings or warn by name."""

from __future__ import annotations

import pytest
from _app_support import PAGES, TINY, new_app, no_exception

from kamoe_viz.config import RunConfig


@pytest.fixture(autouse=True)
def _runs_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("KAMOE_RUNS_DIR", str(tmp_path / "runs"))


@pytest.mark.parametrize("page", PAGES)
def test_every_page_renders_without_a_run(page):
    at = new_app()
    at.switch_page(page).run()
    no_exception(at, page)
    assert at.title, f"{page} has no title"
    sidebar = " ".join(m.value for m in at.sidebar.markdown) + " ".join(c.value for c in at.sidebar.caption)
    assert "Current run" in sidebar and "No model yet" in sidebar
    if page not in ("pages/train.py", "pages/runs.py", "pages/compare.py"):
        assert any("No model trained yet" in i.value for i in at.info), f"{page} does not say what to do first"


def test_train_page_opens_on_the_opening_preset_and_a_defaults_link_on_the_reference_settings():
    """No settings in the address: the Three regimes preset (whose claims are tested), so the first Train click
    shows experts specialising; ``?defaults=1`` (what a link of the library defaults carries): the reference."""
    from kamoe_viz.presets import OPENING_PRESET, preset_config

    opening = preset_config(OPENING_PRESET)
    at = new_app()
    no_exception(at)
    assert at.selectbox(key="w.data.name").value == opening.data.name == "regimes"
    assert at.segmented_control(key="w.model.gate").value == "grkan"
    assert at.text_input(key="w.model.expert_hidden").value == ",".join(map(str, opening.model.expert_hidden))
    assert at.segmented_control(key="w.train.objective").value == "likelihood"
    assert at.number_input(key="w.train.restarts").value == opening.train.restarts
    # the address bar holds the opening settings, so a copied address restores them
    restored = RunConfig.from_query_params(dict(at.query_params))
    assert (restored.data.name, restored.model, restored.train) == (opening.data.name, opening.model, opening.train)
    train = [b for b in at.button if b.label == "Train"][0]
    assert not train.disabled
    assert not at.error, [e.value for e in at.error]

    reference = new_app({"defaults": "1"})
    no_exception(reference)
    assert reference.text_input(key="w.model.expert_hidden").value == "100"
    assert reference.segmented_control(key="w.train.objective").value == "mse"
    assert not reference.warning, [w.value for w in reference.warning]


def test_a_link_restores_the_configuration():
    query = {
        "model.gate": "grn",
        "model.gate_activation": "softmax",
        "model.n_experts": "4",
        "model.top_k": "2",
        "model.expert_hidden": "32,16",
        "train.lr": "0.01",
        "train.epochs": "12",
        "train.seed": "7",
    }
    at = new_app(query)
    no_exception(at)
    assert not at.warning, [w.value for w in at.warning]
    assert at.segmented_control(key="w.model.gate").value == "grn"
    assert at.segmented_control(key="w.model.gate_activation").value == "softmax"
    assert at.number_input(key="w.model.n_experts").value == 4
    assert at.number_input(key="w.model.top_k").value == 2
    assert at.text_input(key="w.model.expert_hidden").value == "32,16"
    assert at.select_slider(key="w.train.lr").value == 0.01
    assert at.number_input(key="w.train.epochs").value == 12
    assert at.number_input(key="w.train.seed").value == 7
    # the URL keeps holding the whole configuration, so it can be copied on
    linked, asked = RunConfig.from_query_params(at.query_params), RunConfig.from_query_params(query)
    assert (linked.model, linked.train, linked.data.name) == (asked.model, asked.train, asked.data.name)


def test_editing_a_setting_updates_the_link():
    at = new_app()
    at.number_input(key="w.model.n_experts").set_value(5).run()
    no_exception(at)
    assert at.query_params.get("model.n_experts") == "5"
    at.text_input(key="w.model.expert_hidden").set_value("64,32").run()
    assert at.query_params.get("model.expert_hidden") == "64,32"
    assert RunConfig.from_query_params(at.query_params).model.expert_hidden == (64, 32)


def test_bad_link_parameters_warn_by_name_and_keep_the_rest():
    at = new_app({"model.n_experts": "zero", "model.gate": "grn", "train.colour": "red"})
    no_exception(at)
    warnings = "\n".join(w.value for w in at.warning)
    assert "model.n_experts" in warnings and "zero" in warnings
    assert "train.colour" in warnings
    assert at.segmented_control(key="w.model.gate").value == "grn"  # the good parameter is kept
    assert at.number_input(key="w.model.n_experts").value == 3  # the bad one falls back to the default


def test_bad_setting_shows_a_message_and_disables_training():
    at = new_app()
    at.text_input(key="w.model.expert_hidden").set_value("ten").run()
    no_exception(at)
    assert any("**Expert hidden sizes**: got 'ten'" in e.value for e in at.error), [e.value for e in at.error]
    assert [b for b in at.button if b.label == "Train"][0].disabled


def test_sequential_experts_on_tabular_data_are_refused_with_a_message():
    at = new_app(TINY)
    at.selectbox(key="w.model.expert").set_value("lstm").run()
    no_exception(at)
    assert any("**Expert type**: got LSTM;" in e.value and "time-series" in e.value for e in at.error)
    assert [b for b in at.button if b.label == "Train"][0].disabled


def test_top_k_above_the_number_of_experts_is_refused():
    at = new_app()
    at.selectbox(key="w.model.routing").set_value("topk").run()
    at.number_input(key="w.model.top_k").set_value(3).run()
    at.number_input(key="w.model.n_experts").set_value(2).run()
    no_exception(at)
    assert any("**Top-k**: got 3" in e.value and "**Experts** (2)" in e.value for e in at.error), [
        e.value for e in at.error
    ]


@pytest.mark.parametrize(
    "preset", ["regimes", "moons", "top1", "series", "california", "collapse", "bias_balance", "expert_choice", "mse"]
)
def test_presets_fill_the_form_and_never_crash(preset, tmp_path, monkeypatch):
    from kamoe_viz.presets import PRESETS

    if preset == "california":  # a small CSV with scikit-learn's columns: no download in tests
        import numpy as np

        columns = [
            "MedInc",
            "HouseAge",
            "AveRooms",
            "AveBedrms",
            "Population",
            "AveOccup",
            "Latitude",
            "Longitude",
            "MedHouseVal",
        ]
        values = np.random.default_rng(0).uniform(1, 5, size=(300, len(columns)))
        csv = tmp_path / "california.csv"
        csv.write_text(",".join(columns) + "\n" + "\n".join(",".join(f"{v:.4f}" for v in row) for row in values))
        monkeypatch.setenv("KAMOE_CALIFORNIA_CSV", str(csv))
    chosen = PRESETS[preset].config()
    at = new_app()
    at.button(key=f"preset_{preset}").click().run()
    no_exception(at, preset)
    assert at.selectbox(key="w.data.name").value == chosen.data.name
    assert at.segmented_control(key="w.model.gate").value == chosen.model.gate
    assert at.number_input(key="w.model.n_experts").value == chosen.model.n_experts
    assert at.selectbox(key="w.model.expert").value == chosen.model.expert
    assert RunConfig.from_query_params(at.query_params).model == chosen.model  # the link follows the preset
    assert not at.error, [e.value for e in at.error]
    assert not [b for b in at.button if b.label == "Train"][0].disabled


def test_a_2d_dataset_shows_a_scatter_of_its_inputs():
    at = new_app()
    at.selectbox(key="w.data.name").set_value("moons").run()
    no_exception(at)
    specs = [c.proto.spec for c in at.get("arrow_vega_lite_chart")] + [c.proto.spec for c in at.get("vega_lite_chart")]
    assert any('"circle"' in spec for spec in specs), "no scatter of the 2-D inputs"
    assert at.query_params.get("data.name") == "moons"


def test_copy_link_shows_a_link_that_restores_the_settings():
    at = new_app({"model.n_experts": "5", "model.gate": "linear"})
    codes = [c.value for c in at.code]
    link = next(c for c in codes if "model.n_experts=5" in c)
    from urllib.parse import parse_qsl

    params = dict(parse_qsl(link.split("?", 1)[1]))
    restored = new_app(params)
    assert restored.number_input(key="w.model.n_experts").value == 5
    assert restored.segmented_control(key="w.model.gate").value == "linear"


def test_switching_to_a_recent_run_happens_once():
    """Picking a recent run in the sidebar makes it current and puts the box back on its placeholder, so later
    clicks elsewhere do not switch runs again."""
    from interpret_helpers import open_page, tiny_run

    first, second = tiny_run("grkan"), tiny_run("grn")
    at = open_page("pages/gates.py")
    at.session_state["current_run"] = first
    at.session_state["recent_runs"] = [first, second]
    at.run()
    box = at.sidebar.selectbox(key="_recent_pick")
    assert box.value == "—" and len(box.options) == 2
    assert "GRN" in box.options[1] and "test R²" in box.options[1]  # the labels tell runs apart
    from kamoe_viz_app.state import run_key

    # the raw option (a run key): AppTest cannot map a formatted label back to it
    at.sidebar.selectbox(key="_recent_pick").set_value(run_key(second)).run()
    no_exception(at)
    assert at.session_state["current_run"] is second
    assert at.sidebar.selectbox(key="_recent_pick").value == "—"
    at.segmented_control(key="gates_style").set_value("violin").run()  # an unrelated click
    no_exception(at)
    assert at.session_state["current_run"] is second
