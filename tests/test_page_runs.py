"""AppTest: the Runs page lists saved runs, reloads one into the explorer, deletes with confirmation, and
imports/exports run files; corrupt or foreign files are refused with a message and change nothing."""

from __future__ import annotations

import os
import shutil

import pytest
from _app_support import TINY, button, errors_text, new_app, no_exception, train_until_done
from test_runs import make_run

from kamoe_viz.runstore import RunStore


@pytest.fixture(scope="module")
def trained_store(tmp_path_factory):
    """A runs folder holding one run trained through the app."""
    root = tmp_path_factory.mktemp("runs_src")
    old = os.environ.get("KAMOE_RUNS_DIR")
    os.environ["KAMOE_RUNS_DIR"] = str(root)
    try:
        at = new_app(dict(TINY, **{"model.n_experts": "3"}))
        train_until_done(at)
        run_id = at.session_state["current_run"].run_id
    finally:
        if old is None:
            os.environ.pop("KAMOE_RUNS_DIR", None)
        else:
            os.environ["KAMOE_RUNS_DIR"] = old
    return root, run_id


@pytest.fixture
def runs_dir(trained_store, tmp_path, monkeypatch):
    """A fresh copy of the trained store for each test."""
    root, run_id = trained_store
    copy = tmp_path / "runs"
    shutil.copytree(root, copy)
    monkeypatch.setenv("KAMOE_RUNS_DIR", str(copy))
    return copy, run_id


def _runs_page(at):
    at.switch_page("pages/runs.py").run()
    no_exception(at, "runs page")
    return at


def test_empty_runs_folder_says_what_to_do(tmp_path, monkeypatch):
    monkeypatch.setenv("KAMOE_RUNS_DIR", str(tmp_path / "empty"))
    at = _runs_page(new_app())
    assert any("No saved runs yet" in i.value for i in at.info)


def test_reload_a_saved_run_into_the_explorer(runs_dir):
    _, run_id = runs_dir
    at = _runs_page(new_app())  # a new browser session: no model in memory
    assert "current_run" not in at.session_state or at.session_state["current_run"] is None
    assert at.selectbox(key="runs_pick").value == run_id
    button(at, "Open in the explorer").click().run()
    no_exception(at)
    run = at.session_state["current_run"]
    assert run is not None and run.run_id == run_id and run.config.model.n_experts == 3
    sidebar = " ".join(m.value for m in at.sidebar.markdown)
    assert "3 × MLP" in sidebar
    at.switch_page("pages/train.py").run()
    no_exception(at)
    assert any(s.value == "Results" for s in at.subheader)
    for page in ("pages/gates.py", "pages/splines.py", "pages/experts.py", "pages/attribution.py"):
        at.switch_page(page).run()
        no_exception(at, page)


def test_delete_asks_for_confirmation(runs_dir):
    root, run_id = runs_dir
    at = _runs_page(new_app())
    button(at, "Delete…").click().run()
    assert any(run_id in w.value for w in at.warning)
    button(at, "Cancel").click().run()
    assert (root / run_id).exists()
    button(at, "Delete…").click().run()
    button(at, "Yes, delete it").click().run()
    no_exception(at)
    assert not (root / run_id).exists()
    assert any("No saved runs yet" in i.value for i in at.info)


def test_corrupt_and_foreign_files_are_refused_and_change_nothing(runs_dir):
    root, run_id = runs_dir
    good = RunStore(root).export_bytes(run_id)
    before = sorted(p.name for p in root.iterdir())
    at = _runs_page(new_app())
    for name, data in [
        ("notes.zip", b"this is not a zip file"),
        ("cut.zip", good[: len(good) // 2]),
        ("foreign.zip", _foreign_zip()),
    ]:
        at.file_uploader(key="run_upload").set_value((name, data, "application/zip")).run()
        no_exception(at, name)
        message = errors_text(at)
        assert name in message and "nothing was changed" in message, message
        assert sorted(p.name for p in root.iterdir()) == before
    at.file_uploader(key="run_upload").set_value(("same.zip", good, "application/zip")).run()
    no_exception(at)  # the very same run: selected, not saved twice
    assert any("already saved here" in s.value for s in at.success) and len(RunStore(root).list_runs()) == 1
    other = RunStore(root.parent / "elsewhere")
    good = other.export_bytes(other.save(make_run()))
    at.file_uploader(key="run_upload").set_value(("shared.zip", good, "application/zip")).run()
    no_exception(at)
    assert any("Imported" in s.value for s in at.success)
    runs = RunStore(root).list_runs()
    assert len(runs) == 2
    copy_id = next(str(r) for r in runs["run_id"] if str(r) != run_id)
    assert at.selectbox(key="runs_pick").value == copy_id  # the imported copy is the one selected
    label = at.selectbox(key="runs_pick").format_func(copy_id)
    assert copy_id[-6:] in label and "imported 20" in label  # and its label tells it apart
    assert "imported" not in at.selectbox(key="runs_pick").format_func(run_id)


def test_download_offers_the_run_file(runs_dir):
    at = _runs_page(new_app())
    labels = [d.proto.label for d in at.get("download_button")]
    assert labels == ["Download as file"], labels
    assert not errors_text(at)  # the export passed its integrity checks


def _foreign_zip() -> bytes:
    import io
    import zipfile

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as z:
        z.writestr("model.pkl", b"\x80\x04not a run")
        z.writestr("readme.txt", "someone else's file")
    return buffer.getvalue()
