"""AppTest: a visitor cannot choose the server's runs folder, and the Runs page's picker raises no widget warning."""

from __future__ import annotations

import logging
import shutil

from _app_support import button, new_app, no_exception
from test_runs import make_run

from kamoe_viz.runstore import RunStore


def test_no_page_lets_a_visitor_type_a_server_path(tmp_path, monkeypatch):
    monkeypatch.setenv("KAMOE_RUNS_DIR", str(tmp_path / "runs"))
    RunStore(tmp_path / "runs").save(make_run(), name="one")
    at = new_app()
    assert [t.label for t in at.sidebar.text_input] == []
    at.switch_page("pages/runs.py").run()
    no_exception(at, "runs page")
    assert not any(t.label == "Folder" for t in at.text_input)
    shown = " ".join(c.value for c in at.caption) + " ".join(m.value for m in at.markdown)
    assert str(tmp_path) not in shown, "the page shows the server's path"


def test_importing_while_a_run_is_open_raises_no_widget_warning(tmp_path, monkeypatch):
    root = tmp_path / "runs"
    monkeypatch.setenv("KAMOE_RUNS_DIR", str(root))
    store = RunStore(root)
    older = store.save(make_run(), name="older")
    store.save(make_run(seed=1), name="newer")
    other = RunStore(tmp_path / "elsewhere")
    blob = other.export_bytes(other.save(make_run(seed=2)))  # a different run: imported as a new one
    at = new_app().switch_page("pages/runs.py").run()
    at.selectbox(key="runs_pick").set_value(older).run()
    button(at, "Open in the explorer").click().run()
    no_exception(at)
    seen: list[str] = []
    handler = logging.Handler()
    handler.emit = lambda record: seen.append(record.getMessage())  # type: ignore[method-assign]
    policies = logging.getLogger("streamlit.elements.lib.policies")  # where Streamlit logs the widget warning
    policies.addHandler(handler)
    try:
        at.file_uploader(key="run_upload").set_value(("older.zip", blob, "application/zip")).run()
    finally:
        policies.removeHandler(handler)
    no_exception(at)
    assert any("Imported" in s.value for s in at.success)
    assert not [m for m in seen if "runs_pick" in m], seen
    shutil.rmtree(root)
