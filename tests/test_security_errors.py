"""Visitors see a short error and a reference (details in the server log), and text from imported runs or uploaded
files is shown as text, never as Markdown (no image a visitor's browser would fetch)."""

from __future__ import annotations

import json
import logging
import re
import tomllib

from _app_support import PAGES, ROOT, button, new_app, no_exception
from streamlit.testing.v1 import AppTest
from test_runs import make_run
from test_runs_files import rezip

from kamoe_viz.runstore import RunStore

EVIL = "![t](http://198.51.100.7/x.png)"
UNESCAPED = re.compile(r"(?<!\\)!(?<!\\)\[t(?<!\\)\]")  # ![t] with none of its characters escaped


def test_visitors_get_no_stack_traces() -> None:
    options = tomllib.loads((ROOT / ".streamlit" / "config.toml").read_text())
    assert options["client"]["showErrorDetails"] in ("none", "type")


def _broken_page() -> None:
    from kamoe_viz_app.safe import guard

    def page() -> None:
        raise RuntimeError("secret server path /srv/private/thing")

    guard(page)


def test_an_unforeseen_error_shows_a_reference_and_logs_the_details(monkeypatch) -> None:
    monkeypatch.setenv("KAMOE_DEBUG", "0")
    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append  # type: ignore[method-assign]
    logging.getLogger("kamoe_viz.app").addHandler(handler)
    try:
        at = AppTest.from_function(_broken_page).run()
    finally:
        logging.getLogger("kamoe_viz.app").removeHandler(handler)
    assert not at.exception
    shown = " ".join(e.value for e in at.error)
    reference = re.search(r"reference ([0-9a-f]{8})", shown)
    assert reference and "/srv/private" not in shown
    assert any(reference.group(1) in r.getMessage() and r.exc_info for r in records)
    monkeypatch.setenv("KAMOE_DEBUG", "1")
    assert AppTest.from_function(_broken_page).run().exception  # developers see it


def _shown(at: AppTest) -> list[str]:
    texts = [m.value for m in at.markdown] + [c.value for c in at.caption] + [e.value for e in at.error]
    texts += [w.value for w in at.warning] + [i.value for i in at.info] + [s.value for s in at.success]
    texts += [e.label for e in at.get("expandable")] if hasattr(at, "get") else []
    return texts


def test_names_from_an_imported_run_are_text(tmp_path, monkeypatch) -> None:
    root = tmp_path / "runs"
    monkeypatch.setenv("KAMOE_RUNS_DIR", str(root))
    source = RunStore(tmp_path / "source")

    def forge(plain: dict[str, bytes]) -> None:
        meta = json.loads(plain["dataset.json"])
        meta.update(name=EVIL, target_name=EVIL, source=EVIL)
        plain["dataset.json"] = json.dumps(meta).encode()

    blob = rezip(source.export_bytes(source.save(make_run(), name=EVIL, notes=EVIL)), forge)
    at = new_app().switch_page("pages/runs.py").run()
    at.file_uploader(key="run_upload").set_value((EVIL + ".zip", blob, "application/zip")).run()
    no_exception(at)
    button(at, "Open in the explorer").click().run()
    no_exception(at)
    for page in PAGES:
        at.switch_page(page).run()
        no_exception(at, page)
        leaks = [t for t in _shown(at) if UNESCAPED.search(t)]
        assert not leaks, f"{page}: Markdown image in {leaks}"
        assert any("t" in t and "198" in t for t in _shown(at)) or page != "pages/train.py"


def test_column_names_of_an_uploaded_csv_are_text(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("KAMOE_RUNS_DIR", str(tmp_path / "runs"))
    csv = f"a,{EVIL},y\n" + "".join(f"{i},word{i},{i * 0.5}\n" for i in range(40))
    at = new_app()
    at.segmented_control(key="w.source").set_value("Upload a CSV").run()
    at.file_uploader(key="upload_csv").set_value(("mine.csv", csv.encode(), "text/csv")).run()
    no_exception(at)
    leaks = [t for t in _shown(at) if UNESCAPED.search(t)]
    assert not leaks, f"Markdown image in {leaks}"
