"""AppTest: train a tiny model live, stop one mid-way, switch pages, refuse a bad CSV, keep sessions apart."""

from __future__ import annotations

import time

import pytest
from _app_support import TINY, button, charts, errors_text, job, new_app, no_exception, train_until_done


@pytest.fixture(autouse=True)
def _runs_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("KAMOE_RUNS_DIR", str(tmp_path / "runs"))
    return tmp_path / "runs"


def test_train_a_tiny_model_shows_metrics_charts_and_saves_the_run(_runs_dir):
    at = new_app(TINY)
    train_until_done(at)
    no_exception(at)
    run = at.session_state["current_run"]
    assert run is not None and run.result.epochs_run == 4
    assert run.config.model.n_experts == 2 and run.config.model.expert_hidden == (8,)
    assert run.run_id and (_runs_dir / run.run_id).exists(), "the finished run was not saved"
    table = [d.value for d in at.dataframe if "mixture" in d.value.columns]
    assert table, "no metrics table"
    metrics = table[0]
    assert set(metrics["metric (test set)"]) >= {"R²", "RMSE"}
    assert "plain baseline" in metrics.columns  # the single-expert baseline was trained with the same settings
    assert len(charts(at)) >= 3  # data scatter/preview, loss curves, gate weights
    sidebar = " ".join(m.value for m in at.sidebar.markdown)
    assert "regimes" in sidebar and "2 × MLP" in sidebar and "GRKAN" in sidebar


def test_live_view_updates_during_training_and_stop_keeps_the_model():
    at = new_app(dict(TINY, **{"train.epochs": "2000"}))
    button(at, "Train").click().run()
    current = job(at)
    deadline = time.monotonic() + 60
    while len(current.stages[0].epochs) < 3:  # the background thread trains while the page reruns
        assert time.monotonic() < deadline, "no epoch finished in 60 s"
        time.sleep(0.2)
        at.run()
    at.run()
    no_exception(at)
    assert current.active
    done_so_far = len(current.stages[0].epochs)
    assert at.progress and "epoch" in at.progress[0].proto.text
    assert len(charts(at)) >= 2  # live loss curve and gate-weight distribution
    assert at.text_input(key="w.model.expert_hidden").disabled  # settings are locked while training
    at.button(key="stop_training").click().run()
    deadline = time.monotonic() + 60
    while current.running:
        assert time.monotonic() < deadline, "Stop was not honoured within 60 s"
        time.sleep(0.1)
    at.run()
    at.run()
    no_exception(at)
    run = at.session_state["current_run"]
    assert run is not None, "Stop lost the model"
    assert run.result.stopped_reason == "stopped"
    assert done_so_far <= run.result.epochs_run < 2000
    assert current.finished and len(current.stages) == 1  # Stop during the mixture skips the baseline
    assert not any(b.label == "Stop" for b in at.button)
    assert not at.text_input(key="w.model.expert_hidden").disabled  # settings are editable again


def test_switching_pages_keeps_the_run_and_the_settings():
    at = new_app(TINY)
    train_until_done(at)
    run = at.session_state["current_run"]
    for page in ("pages/gates.py", "pages/runs.py", "pages/splines.py"):
        at.switch_page(page).run()
        no_exception(at, page)
        assert at.session_state["current_run"] is run
        assert "regimes" in " ".join(m.value for m in at.sidebar.markdown)
    at.switch_page("pages/train.py").run()
    no_exception(at)
    assert at.text_input(key="w.model.expert_hidden").value == "8"
    assert at.number_input(key="w.model.n_experts").value == 2


def test_a_link_made_on_an_uploaded_csv_asks_for_the_file():
    at = new_app(dict(TINY, **{"data.name": "csv", "data.target": "y"}))
    no_exception(at)
    assert [m.value for m in at.info if "Upload the same file" in m.value]


def test_bad_csv_shows_its_message_and_nothing_trains():
    at = new_app(TINY)
    at.segmented_control(key="w.source").set_value("Upload a CSV").run()
    no_exception(at)
    at.file_uploader(key="upload_csv").set_value(("bad.csv", b"a,b,c\n1,2,3\n", "text/csv")).run()
    no_exception(at)
    message = errors_text(at)
    assert message, "a one-row CSV must be refused with a message"
    assert button(at, "Train").disabled
    at.file_uploader(key="upload_csv").set_value(("worse.csv", b"\x00\xff\xfe garbage \x00" * 50, "text/csv")).run()
    no_exception(at)
    assert errors_text(at)
    assert button(at, "Train").disabled
    assert at.session_state["current_run"] is None if "current_run" in at.session_state else True


def test_a_good_csv_trains(tmp_path):
    import numpy as np

    rng = np.random.default_rng(0)
    x1, x2 = rng.normal(size=300), rng.normal(size=300)
    y = np.where(x1 > 0, 2 * x2, -x2) + 0.1 * rng.normal(size=300)
    csv = "x1,x2,y\n" + "\n".join(f"{a:.4f},{b:.4f},{c:.4f}" for a, b, c in zip(x1, x2, y))
    at = new_app(TINY)
    at.segmented_control(key="w.source").set_value("Upload a CSV").run()
    at.file_uploader(key="upload_csv").set_value(("mine.csv", csv.encode(), "text/csv")).run()
    no_exception(at)
    assert not errors_text(at), errors_text(at)
    at.selectbox(key="w.model.routing").set_value("topk").run()  # a rerun with the file still uploaded
    assert not [m.value for m in at.info if "Upload the same file" in m.value]  # it is uploaded already
    at.selectbox(key="w.model.routing").set_value("dense").run()
    train_until_done(at)
    run = at.session_state["current_run"]
    assert run.dataset.feature_names == ["x1", "x2"] and run.config.data.target == "y"


def test_two_sessions_training_at_once_stay_independent():
    """Issue 7: two sessions train at the same time (each job in its own background thread, as on the server);
    models, results and settings stay separate, and neither waits for the other to finish."""
    settings = dict(TINY, **{"train.epochs": "30"})
    solo = new_app(dict(settings, **{"model.n_experts": "3"}))
    button(solo, "Train").click().run()
    t0 = time.perf_counter()
    assert job(solo).wait(300)
    alone = time.perf_counter() - t0

    apps = {n: new_app(dict(settings, **{"model.n_experts": str(n)})) for n in (2, 4)}
    t0 = time.perf_counter()
    for at in apps.values():
        button(at, "Train").click().run()
    for at in apps.values():
        at.run()  # one session's page reruns while both train
        no_exception(at, "while two sessions train")
    for at in apps.values():
        assert job(at).wait(300)
    both = time.perf_counter() - t0
    for at in apps.values():
        at.run()
        no_exception(at)
    runs = {n: at.session_state["current_run"] for n, at in apps.items()}
    assert runs[2].model is not runs[4].model
    assert runs[2].config.model.n_experts == 2 and runs[4].config.model.n_experts == 4
    assert runs[2].model.n_experts == 2 and runs[4].model.n_experts == 4
    assert runs[2].run_id and runs[4].run_id and runs[2].run_id != runs[4].run_id
    for n, at in apps.items():
        assert f"{n} × MLP" in " ".join(m.value for m in at.sidebar.markdown)
        assert at.number_input(key="w.model.n_experts").value == n
    print(
        f"\n[sessions] one session alone {alone:.2f} s; two sessions at once {both:.2f} s (30 epochs + baseline each)"
    )
    assert both < 3.5 * alone + 5  # they share the cores; neither waits for the other to finish first


def test_a_reloaded_page_can_take_over_the_training_it_left_behind():
    """F5 during training starts a new session; the old job trains on. The new session is told and can watch it."""
    first = new_app(dict(TINY, **{"train.epochs": "2000", "train.early_stopping": "0"}))
    button(first, "Train").click().run()
    left_behind = job(first)
    assert left_behind.running
    try:
        reloaded = new_app(TINY)  # the same browser after a reload: a new session
        no_exception(reloaded)
        notes = [m.value for m in reloaded.markdown if "still running on this server" in m.value]
        assert notes and "epoch" in notes[0], [m.value for m in reloaded.markdown][:5]
        reloaded.button(key="adopt_0").click().run()
        no_exception(reloaded)
        assert job(reloaded) is left_behind
        assert any(b.key == "stop_training" for b in reloaded.button)  # its live panel, with Stop
        left_behind.request_stop()
        assert left_behind.wait(120)
        reloaded.run()
        no_exception(reloaded)
        assert reloaded.session_state["current_run"] is left_behind.run
    finally:
        left_behind.request_stop()
        left_behind.wait(120)


def test_every_settings_problem_is_shown_at_once():
    at = new_app(TINY)
    at.selectbox(key="w.model.routing").set_value("topk").run()
    at.number_input(key="w.model.top_k").set_value(9).run()
    at.text_input(key="w.model.expert_hidden").set_value("0").run()
    no_exception(at)
    message = errors_text(at)
    # in the page's words (the widgets' labels), not the configuration's field names
    assert "**Top-k**: got 9" in message and "**Expert hidden sizes**" in message, message
    assert "model." not in message, message
    assert button(at, "Train").disabled


def test_a_min_lr_not_below_the_learning_rate_is_pointed_out():
    at = new_app()
    no_exception(at)
    assert not any("Min LR" in w.value for w in at.warning)
    at.number_input(key="w.train.min_lr").set_value(0.01).run()  # above the default 1e-3
    assert any("will never be lowered" in w.value for w in at.warning)
    at.number_input(key="w.train.lr_patience").set_value(0).run()  # plateau reduction off: nothing to point out
    assert not any("Min LR" in w.value for w in at.warning)


def test_a_diverged_run_shows_the_divergence_as_an_error():
    """lr 10 diverges: the page shows TrainingDivergedError's message (epoch, what to lower) as an error."""
    at = new_app(dict(TINY, **{"train.lr": "10", "train.batch_size": "8", "train.max_grad_norm": "0"}))
    train_until_done(at)
    no_exception(at)
    run = at.session_state["current_run"]
    assert run is not None and run.result.stopped_reason == "diverged"
    text = errors_text(at)
    assert "Training diverged in epoch" in text and "Lower the learning rate" in text
