"""The real server: `streamlit run app.py -- --runs-dir X` chooses the runs folder (over KAMOE_RUNS_DIR), and a run
whose names are Markdown image syntax shows no image in the visitor's browser."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from _browser_support import CHROMIUM, CHROMIUM_ARGS, app_server, wait_idle
from test_runs import make_run
from test_runs_files import rezip

from kamoe_viz.runstore import RunStore

pytestmark = pytest.mark.browser
if not Path(CHROMIUM).exists():
    pytest.skip(f"{CHROMIUM} is missing", allow_module_level=True)
sync_api = pytest.importorskip("playwright.sync_api")

EVIL = "![t](http://198.51.100.7/x.png)"


def test_runs_dir_flag_and_no_markdown_image(tmp_path: Path) -> None:
    chosen, decoy = tmp_path / "chosen", tmp_path / "decoy"
    source = RunStore(tmp_path / "source")

    def forge(plain: dict[str, bytes]) -> None:
        meta = json.loads(plain["dataset.json"])
        meta.update(name=EVIL, target_name=EVIL)
        plain["dataset.json"] = json.dumps(meta).encode()

    RunStore(chosen).import_bytes(rezip(source.export_bytes(source.save(make_run(), name=EVIL)), forge), "x.zip")
    outside: list[str] = []
    with (
        app_server(decoy, tmp_path / "server.log", app_args=("--runs-dir", str(chosen))) as url,
        sync_api.sync_playwright() as pw,
    ):
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1400})
        page.on("request", lambda r: outside.append(r.url) if "198.51.100.7" in r.url else None)
        page.goto(url + "/runs", wait_until="domcontentloaded")
        page.get_by_role("button", name="Open in the explorer").wait_for(timeout=150_000)
        page.get_by_role("button", name="Open in the explorer").click()
        wait_idle(page, timeout=150)
        page.wait_for_timeout(1500)
        images = page.locator('img[src*="198.51.100.7"]').count()
        text = page.inner_text("body")
        browser.close()
    assert not any(p.name != ".keep" for p in decoy.glob("*") if p.is_dir()), "the decoy folder was used"
    assert images == 0 and not outside, outside
    assert "198.51.100.7" in text  # the name is shown, as text
