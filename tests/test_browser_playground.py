"""The Playground in headless Chromium: Step shows `Epoch 1`, Play then Pause stops the epoch count, the region map
shows while paused, and moving `Timeline epoch` on the Gates page redraws its chart. Screenshots go to
test-artifacts/ (gitignored)."""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest
from _browser_support import ARTIFACTS, CHROMIUM, CHROMIUM_ARGS, NAV_LINK, app_server
from _browser_support import no_exception as _no_exception
from _browser_support import wait_idle as _wait_idle

pytestmark = pytest.mark.browser

MOONS = (
    "data.name=moons&model.gate=grkan&model.gate_activation=softmax&model.n_experts=2&model.expert_hidden=8"
    "&train.epochs=60&train.early_stopping=0&train.lr=0.01"
)
STATUS = re.compile(r"Epoch (\d+) / (\d+)")

if not Path(CHROMIUM).exists():
    pytest.skip(f"{CHROMIUM} is missing (install Debian's chromium; scripts/test.sh does)", allow_module_level=True)
sync_api = pytest.importorskip("playwright.sync_api")


def _epoch(page) -> int:
    text = page.locator('[data-testid="stMain"]').get_by_text(STATUS).first.inner_text()
    return int(STATUS.search(text).group(1))


def _click(page, label: str) -> None:
    page.get_by_role("button", name=label, exact=True).click()


def test_play_pause_step_and_scrub_the_timeline(tmp_path):
    ARTIFACTS.mkdir(exist_ok=True)
    with app_server(tmp_path / "runs", tmp_path / "server.log") as url, sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1500, "height": 1900})
        page.goto(f"{url}/?{MOONS}", wait_until="domcontentloaded")
        page.get_by_role("button", name="Step", exact=True).wait_for(timeout=60_000)
        _wait_idle(page)
        assert _epoch(page) == 0
        _click(page, "Step")
        page.get_by_text("Epoch 1 / 60").first.wait_for(timeout=60_000)
        _wait_idle(page)
        region = page.locator(".st-key-pg_region .vega-embed :is(canvas, svg)").first
        region.wait_for(state="visible", timeout=30_000)  # the region map shows while paused
        page.locator(".st-key-pg_prediction .vega-embed :is(canvas, svg)").first.wait_for(timeout=30_000)

        _click(page, "Play")
        deadline = time.time() + 60
        while _epoch(page) < 4:
            assert time.time() < deadline, "Play did not advance the epochs"
            page.wait_for_timeout(250)
        page.screenshot(path=str(ARTIFACTS / "playground_playing.png"), full_page=True)
        _click(page, "Pause")
        _wait_idle(page)
        paused = _epoch(page)
        page.wait_for_timeout(2500)
        assert _epoch(page) == paused, "the epoch count kept moving after Pause"
        assert region.is_visible()
        _no_exception(page, "Train page while paused")
        page.screenshot(path=str(ARTIFACTS / "playground_paused.png"), full_page=True)
        # every live chart fits its column (a fixed-width chart overflowed it: the newest epochs were cut off and the
        # load bars hid under the histogram beside them)
        overflow = page.evaluate("""() => [...document.querySelectorAll('[data-testid="stColumn"]')].flatMap(col => {
            const right = col.getBoundingClientRect().right;
            return [...col.querySelectorAll('.vega-embed :is(canvas, svg)')]
                .map(el => el.getBoundingClientRect().right - right).filter(excess => excess > 2);
        })""")
        assert overflow == [], f"live charts wider than their column by {overflow} px"

        page.get_by_text("real time", exact=True).first.click()  # finish quickly
        _wait_idle(page)
        _click(page, "Play")
        page.get_by_text(re.compile(r"Epoch 60 / 60 .*finished")).first.wait_for(timeout=180_000)
        _wait_idle(page)

        page.locator(NAV_LINK).filter(has_text="Gates").first.click()
        page.wait_for_url("**/gates*", timeout=30_000)
        page.get_by_text("Timeline epoch", exact=True).first.wait_for(timeout=120_000)
        slider = page.locator('[data-testid="stSlider"] input[aria-label="Timeline epoch"]')
        slider.first.wait_for(state="attached", timeout=60_000)
        _wait_idle(page, timeout=120)
        _no_exception(page, "Gates page")
        chart = page.locator('[data-testid="stMain"] .vega-embed').first
        chart.wait_for(timeout=60_000)
        page.wait_for_timeout(500)
        before = chart.screenshot()
        page.screenshot(path=str(ARTIFACTS / "playground_gates_last.png"), full_page=True)
        slider.first.focus()
        page.keyboard.press("Home")  # epoch 0: the untrained gate
        _wait_idle(page)
        page.wait_for_timeout(800)
        assert chart.screenshot() != before, "moving Timeline epoch did not change the chart"
        page.screenshot(path=str(ARTIFACTS / "playground_gates_epoch0.png"), full_page=True)
        _no_exception(page, "Gates page after scrubbing")
        browser.close()
