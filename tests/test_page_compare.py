"""AppTest: the Compare page runs a tiny comparison, shows its verdict, charts and table, and keeps it per session."""

from __future__ import annotations

import _app_support
from _app_support import charts
from streamlit.testing.v1 import AppTest

PAGE = "pages/compare.py"


def open_compare(timeout: float = 240, **link: str) -> AppTest:
    at = AppTest.from_file(_app_support.APP, default_timeout=timeout)
    at.query_params["data.options.n_samples"] = "300"  # the Train page's (linked) dataset options are reused
    at.query_params.update(link)
    return at.switch_page(PAGE).run()


def clean(at: AppTest, where: str = "") -> None:
    assert not at.exception, f"{where}: {[e.value for e in at.exception]}"
    assert not at.error, f"{where}: {[e.value for e in at.error]}"


def set_tiny(at: AppTest, gates=("linear", "grkan")) -> None:
    at.multiselect(key="cmp.gates").set_value(list(gates))
    at.number_input(key="cmp.seeds").set_value(2)
    at.number_input(key="cmp.epochs").set_value(2)
    at.number_input(key="cmp.n_experts").set_value(2)
    at.text_input(key="cmp.hidden").set_value("4")


def test_tiny_comparison_end_to_end():
    at = open_compare()
    clean(at, "first view")
    assert any("No comparison yet" in c.value for c in at.caption)
    set_tiny(at)
    at.button(key="cmp.run").click().run()
    clean(at, "after running")
    result = at.session_state["compare_result"]
    assert len(result.table) == 6 and set(result.table["variant"]) == {"standard", "linear", "grkan"}
    assert result.table["epochs_run"].max() <= 2
    assert result.config["train"]["objective"] == "mse" and result.config["train"]["restarts"] == 1  # recipe off
    verdicts = [m.value for m in at.info] + [m.value for m in at.success]
    from kamoe_viz.labels import in_variant_labels

    assert any(in_variant_labels(result.verdict) == v for v in verdicts), verdicts
    assert "GRKAN gate" in in_variant_labels(result.verdict)  # the page names variants as its charts do
    # metric dots + CI, loss curves, cost, gate distributions
    assert len(charts(at)) >= 4
    assert any(s.value == "Gate weights on the same test rows" for s in at.subheader)
    assert len(at.get("download_button")) == 1
    assert any("with 2 seeds it cannot go below p = 0.5" in c.value for c in at.caption)  # the Wilcoxon floor
    # the result survives a visit to another page and back (session state, per user)
    at.switch_page("pages/runs.py").run()
    at.switch_page(PAGE).run()
    clean(at, "back again")
    assert at.session_state["compare_result"] is result and len(charts(at)) >= 4


def test_bad_settings_show_a_message_and_keep_the_page():
    at = open_compare()
    set_tiny(at)
    at.text_input(key="cmp.hidden").set_value("wide")
    at.button(key="cmp.run").click().run()
    assert not at.exception
    assert any("expert layer widths: got 'wide'" in e.value for e in at.error)
    assert "compare_result" not in at.session_state
    set_tiny(at, gates=())
    at.checkbox(key="cmp.standard").set_value(False)
    at.button(key="cmp.run").click().run()
    assert not at.exception and any("choose at least one gate" in e.value for e in at.error)


def test_the_form_starts_from_the_train_page_and_offers_its_training_recipe():
    """A Train page with its own recipe (as the presets have) offers it, on by default; a run with it trains every
    variant with that objective, gate learning rate and restarts. Without one there is nothing to offer."""
    assert not [c for c in open_compare().checkbox if c.key == "cmp.recipe"]
    recipe_link = {
        "train.objective": "likelihood",
        "train.gate_lr_scale": "5",
        "train.restarts": "2",
        "train.restart_epochs": "2",
        "train.epochs": "7",
    }
    at = open_compare(**recipe_link)
    clean(at, "first view")
    recipe = at.checkbox(key="cmp.recipe")
    assert recipe.value and "training objective likelihood" in recipe.label and "restarts 2" in recipe.label
    assert at.number_input(key="cmp.epochs").value == 7  # the Train page's schedule, not the library default
    intro = " ".join(m.value for m in at.markdown)
    assert "Train page's defaults" not in intro and "starts from the Train page" in intro
    set_tiny(at, gates=("linear",))
    at.button(key="cmp.run").click().run()
    clean(at, "with the recipe")
    train = at.session_state["compare_result"].config["train"]
    assert train["objective"] == "likelihood" and train["gate_lr_scale"] == 5.0 and train["restarts"] == 2
    at.checkbox(key="cmp.recipe").uncheck()
    at.button(key="cmp.run").click().run()
    train = at.session_state["compare_result"].config["train"]
    assert train["objective"] == "mse" and train["restarts"] == 1
