"""AppTest of the Train page's Playground controls: order and labels, Step, Play and Pause, Reset, New data (and
its reason on a fixed dataset), locked settings with their tooltip, the finished run with its timeline, and
presentation mode."""

from __future__ import annotations

import pytest
from _app_support import button, charts, new_app, no_exception

from kamoe_viz.training.session import FIXED_DATA_REASON, LOCK_REASON

MOONS = {
    "data.name": "moons",
    "data.options.n_samples": "300",
    "model.expert_hidden": "8",
    "model.n_experts": "2",
    "model.gate": "grkan",
    "model.gate_activation": "softmax",
    "train.epochs": "6",
    "train.early_stopping": "0",
    "train.batch_size": "64",
}
SESSION = "_playground"


@pytest.fixture(autouse=True)
def _runs_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("KAMOE_RUNS_DIR", str(tmp_path / "runs"))
    return tmp_path / "runs"


def status(at) -> str:
    lines = [m.value for m in at.markdown if m.value.startswith("**Epoch")]
    assert lines, "no status line"
    return lines[0]


def test_transport_controls_in_order_and_step_pause_play():
    at = new_app(MOONS)
    no_exception(at)
    labels = [b.label for b in at.button]
    order = [labels.index(x) for x in ("Play", "Pause", "Step", "Reset", "New data")]
    assert order == sorted(order)
    assert status(at).startswith("**Epoch 0 / 6")
    assert "Train" in labels  # the one-click Train stays
    button(at, "Step").click().run()
    no_exception(at, "after Step")
    assert status(at).startswith("**Epoch 1 / 6")
    assert at.session_state[SESSION].timeline.epochs == [0, 1]
    titles = " ".join(str(c.proto.spec) for c in charts(at))
    assert "Winning expert" in titles and "Prediction" in titles, "no region map while paused"
    # settings that fix the model are locked with the reason as tooltip; the learning rate is not
    experts = [n for n in at.number_input if n.label == "Experts"][0]
    assert experts.disabled and experts.help == LOCK_REASON
    lr = [s for s in at.select_slider if s.label == "Learning rate"][0]
    assert not lr.disabled
    button(at, "Play").click().run()
    session = at.session_state[SESSION]
    assert session.playing
    button(at, "Pause").click().run()
    paused_at = session.epoch
    at.run()
    assert session.epoch == paused_at and not session.playing  # paused: the count stays
    lr.set_value(0.001).run()
    no_exception(at, "after changing the learning rate")
    assert at.session_state[SESSION] is session  # applied on continue, same model
    button(at, "Step").click().run()
    assert session.epochs[-1].lr == pytest.approx(0.001)
    button(at, "Reset").click().run()
    assert status(at).startswith("**Epoch 0 / 6")
    assert not [n for n in at.number_input if n.label == "Experts"][0].disabled


def test_playing_to_the_end_makes_a_saved_run_with_a_timeline(_runs_dir):
    at = new_app(dict(MOONS, **{"train.epochs": "3"}))
    for _ in range(3):
        button(at, "Step").click().run()
    no_exception(at)
    run = at.session_state["current_run"]
    assert run is not None and run.timeline is not None and run.timeline.epochs == [0, 1, 2, 3]
    assert run.run_id and (_runs_dir / run.run_id / "timeline.json").exists()
    assert "finished" in status(at)


def test_new_data_resamples_generated_data_and_is_disabled_for_fixed_data():
    at = new_app(MOONS)
    button(at, "New data").click().run()
    no_exception(at)
    assert at.session_state[SESSION].config.data.seed == 1
    assert [n for n in at.number_input if n.label == "Data seed"][0].value == 1
    at = new_app({"data.name": "diabetes", "train.epochs": "2"})
    new = button(at, "New data")
    assert new.disabled and new.help == FIXED_DATA_REASON


def test_presentation_mode_hides_the_advanced_controls():
    at = new_app(dict(MOONS, present="1"))
    no_exception(at)
    labels = [b.label for b in at.button]
    assert {"Play", "Pause", "Step", "Reset", "New data"} <= set(labels)
    assert "Train" not in labels and not [n for n in at.number_input if n.label == "Experts"]
    assert [s for s in at.selectbox if s.label == "Dataset"]
    button(at, "Step").click().run()
    assert status(at).startswith("**Epoch 1 / 6")
    assert at.query_params.get("present") in ("1", ["1"])


def test_timeline_epoch_redraws_gates_splines_experts_and_exports_a_gif():
    at = new_app(dict(MOONS, **{"train.epochs": "4"}))
    for _ in range(4):
        button(at, "Step").click().run()
    assert at.session_state["current_run"].timeline.epochs == [0, 1, 2, 3, 4]
    at.switch_page("pages/gates.py").run()
    no_exception(at, "Gates")
    slider = [s for s in at.select_slider if s.label == "Timeline epoch"][0]
    assert slider.value == 4
    before = " ".join(str(c.proto.spec) for c in charts(at))
    assert "Winning expert at epoch 4" in before and "Load per expert over epochs" in before
    slider.set_value(0).run()
    after = " ".join(str(c.proto.spec) for c in charts(at))
    assert "Winning expert at epoch 0" in after and after != before
    button(at, "Animate").click().run()
    assert button(at, "Stop")  # animating; the fragment's timer advances the slider in a browser
    button(at, "Stop").click().run()
    button(at, "Prepare GIF and PNG frames").click().run()
    no_exception(at, "export")
    gif = at.session_state["_gates_export"][1]
    assert gif[:6] in (b"GIF89a", b"GIF87a")
    best = at.session_state["current_run"].result.best_epoch
    for page in ("pages/gates.py", "pages/splines.py", "pages/experts.py"):
        at.switch_page(page).run()
        no_exception(at, page)
        slider = [s for s in at.select_slider if s.label == "Timeline epoch"][0]
        slider.set_value(2).run()
        texts = [m.value for m in at.markdown]
        assert any(t.startswith("**Epoch 2**") and "val loss" in t for t in texts), page  # the box's epoch
        notes = [i.value for i in at.info if "Below this box: the trained model as saved" in i.value]
        assert notes and f"epoch {best} of 4" in notes[0], page  # what the rest of the page shows
        if page != "pages/gates.py":
            assert "epoch 2" in " ".join(str(c.proto.spec) for c in charts(at)), page  # chart titles follow


def test_while_the_playground_trains_the_sidebar_and_other_pages_say_so():
    from kamoe_viz_app.state import PLAYGROUND_NOTE

    at = new_app(MOONS)
    assert any("No model yet" in c.value for c in at.sidebar.caption)
    button(at, "Step").click().run()
    sidebar = " ".join(c.value for c in at.sidebar.caption)
    assert PLAYGROUND_NOTE in sidebar and "No model yet" not in sidebar
    at.switch_page("pages/gates.py").run()
    no_exception(at, "Gates while the playground trains")
    text = " ".join(i.value for i in at.info)
    assert PLAYGROUND_NOTE in text and "No model trained yet" not in text


def test_after_one_click_train_the_playground_shows_that_run_and_play_starts_a_new_one():
    """One model in front of the user: a finished Train run is what the panel shows (not 'Epoch 0'); Play or
    Step then start a new model whose results replace the old ones only when it ends."""
    from _app_support import train_until_done

    at = new_app(dict(MOONS, **{"train.epochs": "3"}))
    at.checkbox(key="with_baseline").uncheck().run()
    train_until_done(at)
    run = at.session_state["current_run"]
    assert status(at).startswith("**Epoch 3 / 3") and "finished" in status(at), status(at)
    assert at.session_state[SESSION].run is run  # the panel's session is the Train run, finished
    titles = " ".join(str(c.proto.spec) for c in charts(at))
    assert "Winning expert" in titles, "the Train run's region map is not in the panel"
    shown = " ".join(d.value.to_string() for d in at.dataframe)
    assert "NMI vs regimes" in shown and "min load" in shown  # the routing metrics beside the scores
    button(at, "Step").click().run()
    no_exception(at, "Step after Train")
    assert status(at).startswith("**Epoch 1 / 3"), status(at)
    assert at.session_state["current_run"] is run  # the old run stays current until the new one ends...
    assert any("playground's model replaces it" in e.label for e in at.expander)  # ...and says so
    assert any("step by step in the playground" in c.value for c in at.sidebar.caption)
    end = button(at, "End here")
    assert not end.disabled
    end.click().run()
    no_exception(at, "End here")
    ended = at.session_state["current_run"]
    assert ended is not run and ended.result.epochs_run == 1 and ended.run_id
    assert ended.timeline is not None and ended.timeline.epochs[-1] == 1
    assert "finished" in status(at) or "stopped" in status(at), status(at)
    assert not [n for n in at.number_input if n.label == "Experts"][0].disabled  # unlocked again


def test_train_replaces_a_paused_playground_model():
    from _app_support import train_until_done

    at = new_app(dict(MOONS, **{"train.epochs": "3"}))
    at.checkbox(key="with_baseline").uncheck().run()
    button(at, "Step").click().run()
    assert status(at).startswith("**Epoch 1 / 3")
    train_until_done(at)
    assert status(at).startswith("**Epoch 3 / 3"), status(at)
    assert at.session_state[SESSION].run is at.session_state["current_run"]
