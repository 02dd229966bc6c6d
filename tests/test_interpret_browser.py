"""The interpretation pages in headless Chromium: after training on the default dataset, each page draws its
charts (Vega canvas/SVG in the DOM) without a Streamlit exception, and clicking a small multiple on the Splines
page shows that edge large. Screenshots go to test-artifacts/ (gitignored)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from _browser_support import ARTIFACTS, CHROMIUM, NAV_LINK, app_server, no_exception
from _browser_support import CHROMIUM_ARGS as ARGS

pytestmark = pytest.mark.browser

QUICK = "model.expert_hidden=16&train.epochs=20&train.early_stopping=0"
# least number of rendered Vega views per page for a GRKAN model on the (4-feature) regimes dataset
PAGES = {"Splines": 2, "Gates": 5, "Experts": 4, "Attribution": 2}
CHART = ".vega-embed canvas, .vega-embed svg.marks"

if not Path(CHROMIUM).exists():
    pytest.skip(f"{CHROMIUM} is missing (install Debian's chromium)", allow_module_level=True)
sync_api = pytest.importorskip("playwright.sync_api")


@pytest.fixture(scope="module")
def app_url(tmp_path_factory):
    with app_server(tmp_path_factory.mktemp("runs"), tmp_path_factory.mktemp("log") / "server.log") as url:
        yield url


def _idle(page, timeout: float = 120) -> None:
    page.wait_for_timeout(300)
    page.wait_for_selector('[data-testid="stStatusWidget"]', state="detached", timeout=timeout * 1000)


def _visible_charts(page) -> int:
    charts = page.locator(CHART)
    return sum(1 for i in range(charts.count()) if charts.nth(i).is_visible())


def test_interpretation_pages_render_after_training(app_url):
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        page = browser.new_page(viewport={"width": 1500, "height": 2000})
        page.goto(f"{app_url}/?{QUICK}", wait_until="domcontentloaded")
        page.get_by_role("button", name="Train", exact=True).wait_for(timeout=60_000)
        page.get_by_role("button", name="Train", exact=True).click()
        page.get_by_role("heading", name="Results", exact=True).wait_for(timeout=240_000)
        _idle(page)
        for name, least in PAGES.items():
            page.locator(NAV_LINK).filter(has_text=name).first.click()
            page.wait_for_url(f"**/{name.lower()}*", timeout=30_000)
            _idle(page)
            deadline = time.time() + 120  # first visit computes the page's results, then Vega draws
            while (found := _visible_charts(page)) < least and time.time() < deadline:
                page.wait_for_timeout(500)
            _idle(page)
            no_exception(page, name)
            page.screenshot(path=str(ARTIFACTS / f"interpret_{name.lower()}.png"), full_page=True)
            assert found >= least, f"{name}: expected at least {least} charts, found {found}"

        # Splines: a click on a small multiple shows that edge large (the "Edge" select follows the click).
        page.locator(NAV_LINK).filter(has_text="Splines").first.click()
        _idle(page)
        page.wait_for_timeout(1000)

        def chosen_edge() -> str:
            return page.get_by_role("combobox", name="Edge", exact=True).input_value()

        before = chosen_edge()
        assert before.startswith("#1 ")
        embeds = page.locator(".vega-embed")
        # the small multiples: the first chart below "Edges ranked by importance" (the timeline's charts come first)
        heading = page.get_by_role("heading", name="Edges ranked by importance").bounding_box()
        assert heading is not None
        grid = next(
            e
            for e in (embeds.nth(i) for i in range(embeds.count()))
            if e.is_visible() and (e.bounding_box() or {"y": -1})["y"] > heading["y"]
        )
        grid.scroll_into_view_if_needed()
        box = grid.bounding_box()
        assert box is not None
        # the middle of the second panel of the first row: the second-ranked edge
        page.mouse.click(box["x"] + box["width"] * 0.40, box["y"] + box["height"] * 0.19)
        _idle(page)
        page.wait_for_timeout(500)
        after = chosen_edge()
        page.screenshot(path=str(ARTIFACTS / "interpret_splines_clicked.png"), full_page=True)
        no_exception(page, "Splines after a click")
        assert after.startswith("#2 "), (before, after)
        browser.close()
