"""Tables in headless Chromium: the Attribution tables and Compare's "All runs" fit the page's width; the wide ones
(Runs, Compare's per-variant summary) scroll sideways. Screenshots of each table go to test-artifacts/."""

from __future__ import annotations

from pathlib import Path

import pytest
from _browser_support import ARTIFACTS, CHROMIUM, NAV_LINK, app_server, no_exception, wait_idle
from _browser_support import CHROMIUM_ARGS as ARGS

pytestmark = pytest.mark.browser

if not Path(CHROMIUM).exists():
    pytest.skip(f"{CHROMIUM} is missing (install Debian's chromium)", allow_module_level=True)
sync_api = pytest.importorskip("playwright.sync_api")

QUICK = "model.expert_hidden=16&train.epochs=10&train.early_stopping=0"
# For each visible st.dataframe: its scroller's widths, and how far it moves when asked to scroll to the far right.
MEASURE = """() => Array.from(document.querySelectorAll('[data-testid="stDataFrame"]'))
  .filter(el => el.getBoundingClientRect().width > 0 && el.querySelector('.dvn-scroller'))
  .map(el => { const sc = el.querySelector('.dvn-scroller'); const sw = sc.scrollWidth, cw = sc.clientWidth;
               sc.scrollLeft = 1e6; const moved = sc.scrollLeft; sc.scrollLeft = 0;
               return {fits: sw <= cw + 1, scrolls: moved > 0, sw: sw, cw: cw}; })"""


def _tables(page, name: str) -> list[dict]:
    wait_idle(page, 300)
    page.wait_for_timeout(1500)  # the grids size their columns after the first paint
    no_exception(page, name)
    grids = page.locator('[data-testid="stDataFrame"]')
    for i in range(grids.count()):
        if grids.nth(i).is_visible():
            grids.nth(i).screenshot(path=str(ARTIFACTS / f"table_{name}_{i}.png"))
    return page.evaluate(MEASURE)


def _go(page, name: str) -> None:
    page.locator(NAV_LINK).filter(has_text=name).first.click()
    page.wait_for_url(f"**/{name.lower()}*", timeout=30_000)
    wait_idle(page, 300)


def test_tables_fit_or_scroll(tmp_path: Path) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    with app_server(tmp_path / "runs", tmp_path / "server.log") as url, sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 4000})  # a laptop's width
        page.goto(f"{url}/?{QUICK}", wait_until="domcontentloaded")
        page.get_by_role("button", name="Train", exact=True).wait_for(timeout=90_000)
        page.get_by_role("button", name="Train", exact=True).click()
        page.get_by_role("heading", name="Results", exact=True).wait_for(timeout=300_000)
        wait_idle(page, 300)

        _go(page, "Attribution")
        page.get_by_text("Integrated Gradients convergence per target").wait_for(timeout=300_000)
        attribution = _tables(page, "attribution")
        assert len(attribution) >= 2 and all(t["fits"] for t in attribution[:2]), attribution  # global + convergence

        _go(page, "Runs")
        runs = _tables(page, "runs")
        assert runs and all(t["fits"] or t["scrolls"] for t in runs), runs

        _go(page, "Compare")
        page.get_by_role("spinbutton", name="Seeds").fill("2")
        page.get_by_role("spinbutton", name="Epochs (at most)").fill("5")
        page.get_by_role("textbox", name="Expert layer widths").fill("8")
        page.get_by_role("button", name="Run comparison").click()
        page.get_by_role("heading", name="All runs").wait_for(timeout=300_000)
        summary, *_, all_runs = _tables(page, "compare")
        assert summary["fits"] or summary["scrolls"], summary
        assert all_runs["fits"], all_runs  # the columns that tell runs apart, without scrolling
        browser.close()
