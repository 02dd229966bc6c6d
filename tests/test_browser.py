"""The real app in headless Chromium: start the server, train on the default dataset, visit every page.

Needs Debian's chromium at /usr/bin/chromium (scripts/test.sh installs it) and the `playwright` package; it is
skipped, with the reason, when either is missing. Screenshots go to test-artifacts/ (gitignored).
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from _browser_support import ARTIFACTS, CHROMIUM, CHROMIUM_ARGS, NAV_LINK, SIDEBAR_RECORDER, app_server
from _browser_support import no_exception as _no_exception
from _browser_support import wait_idle as _wait_idle

pytestmark = pytest.mark.browser

# A small, quick configuration of the default dataset, given as a link (this also checks that links restore it).
QUICK = "model.expert_hidden=16&train.epochs=120&train.early_stopping=0"
# Pages after Train, in navigation order: (page title, least number of Vega charts it shows once a model exists).
PAGES_AFTER_TRAINING = {
    "Splines": ("Splines", 1),
    "Gates": ("Gates", 1),
    "Experts": ("Experts", 1),
    "Compare": ("Compare gates", 0),
    "Attribution": ("Attribution", 0),
    "Runs": ("Saved runs", 0),
}
CHART = ".vega-embed canvas, .vega-embed svg"

if not Path(CHROMIUM).exists():
    pytest.skip(f"{CHROMIUM} is missing (install Debian's chromium; scripts/test.sh does)", allow_module_level=True)
sync_api = pytest.importorskip("playwright.sync_api")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    runs = tmp_path_factory.mktemp("runs")
    log = tmp_path_factory.mktemp("log") / "server.log"
    with app_server(runs, log) as url:
        yield {"url": url, "runs": runs, "log": str(log)}


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


def _new_page(browser, url: str, outside: list[str] | None = None):
    """The app at ``url``, once its Train button shows; requests that leave the machine go to ``outside``."""
    page = browser.new_page(viewport={"width": 1500, "height": 1800})
    if outside is not None:
        local = ("http://127.0.0.1", "ws://127.0.0.1", "http://localhost", "data:", "blob:", "about:")
        page.on("request", lambda request: None if request.url.startswith(local) else outside.append(request.url))
    page.goto(url, wait_until="domcontentloaded")
    page.get_by_role("button", name="Train", exact=True).wait_for(timeout=60_000)
    return page


def _saved(server) -> int:
    return sum(1 for p in Path(server["runs"]).iterdir() if not p.name.startswith("."))


def _wait_saved(server, count: int, timeout: float = 180) -> None:
    deadline = time.time() + timeout
    while _saved(server) < count:
        assert time.time() < deadline, f"no new saved run after {timeout} s"
        time.sleep(0.2)


def _wait_done(page, timeout: float = 180) -> None:
    """Wait until the whole job (mixture and baseline) is over: Train is enabled again and Stop is gone."""
    deadline = time.time() + timeout
    train = page.get_by_role("button", name="Train", exact=True)
    while not (train.count() and train.first.is_enabled() and _stop(page).count() == 0):
        assert time.time() < deadline, f"training still running after {timeout} s"
        page.wait_for_timeout(250)
    _wait_idle(page)


def _train(page, server, timeout: float = 180) -> float:
    """Click Train and wait until the run is saved and its results are shown; returns the seconds it took."""
    before = _saved(server)
    t0 = time.perf_counter()
    page.get_by_role("button", name="Train", exact=True).click()
    _wait_saved(server, before + 1, timeout)
    page.get_by_role("heading", name="Results", exact=True).wait_for(timeout=timeout * 1000)
    _wait_done(page, timeout)
    return time.perf_counter() - t0


def _stop(page):
    """The live panel's Stop button (not the toolbar's "Stop" of a running script)."""
    return page.locator(".st-key-stop_training button:visible").first


def test_train_page_trains_live_and_every_page_renders(server, browser):
    ARTIFACTS.mkdir(exist_ok=True)
    outside: list[str] = []
    page = _new_page(browser, f"{server['url']}/?{QUICK}", outside)
    _no_exception(page, "Train page on load")
    assert page.get_by_label("Expert hidden sizes", exact=True).input_value() == "16"  # the link restored the setting
    page.screenshot(path=str(ARTIFACTS / "train_before.png"), full_page=True)

    page.get_by_role("button", name="Train", exact=True).click()
    stop = _stop(page)
    stop.wait_for(timeout=30_000)  # training is live: Stop shown, progress bar and charts update
    page.locator('[data-testid="stProgress"]').first.wait_for(timeout=30_000)
    page.get_by_text("Mixture: epoch").first.wait_for(timeout=30_000)
    page.locator(f'[data-testid="stMain"] :is({CHART}):visible').nth(1).wait_for(timeout=30_000)  # loss + gates
    page.screenshot(path=str(ARTIFACTS / "train_live.png"), full_page=True)
    _wait_saved(server, 1)
    page.get_by_role("heading", name="Results", exact=True).wait_for(timeout=60_000)
    _wait_done(page)
    _no_exception(page, "Train page after training")
    charts = page.locator(CHART).count()
    assert charts >= 3, f"expected loss, gate and data charts, found {charts}"
    assert page.get_by_text("Loss").count() >= 1
    sidebar = page.locator('[data-testid="stSidebar"]').inner_text()
    assert "regimes" in sidebar.lower() and "GRKAN" in sidebar
    page.screenshot(path=str(ARTIFACTS / "train_done.png"), full_page=True)

    for name, (title, min_charts) in PAGES_AFTER_TRAINING.items():
        page.locator(NAV_LINK).filter(has_text=name).first.click()
        page.wait_for_url(f"**/{name.lower()}*", timeout=30_000)
        page.locator('[data-testid="stMain"] h1').filter(has_text=title).first.wait_for(timeout=120_000)
        if min_charts:
            page.locator(f'[data-testid="stMain"] :is({CHART}):visible').nth(min_charts - 1).wait_for(timeout=120_000)
        _wait_idle(page, timeout=120)
        _no_exception(page, f"{name} page")
        found = page.locator(f'[data-testid="stMain"] :is({CHART}):visible').count()
        assert found >= min_charts, f"{name}: expected at least {min_charts} charts, found {found}"
        page.screenshot(path=str(ARTIFACTS / f"page_{name.lower()}.png"), full_page=True)
    page.close()
    assert outside == [], f"the app fetched from outside this machine (breaks offline demos): {outside[:5]}"


def test_two_sessions_train_at_once_and_stay_independent(server, browser):
    """Issue 7: two browser sessions training together keep their own models; neither freezes the other."""
    a = _new_page(browser, f"{server['url']}/?{QUICK}&model.n_experts=2")
    b = _new_page(browser, f"{server['url']}/?{QUICK}&model.n_experts=4")
    alone = _train(a, server)
    before = _saved(server)
    a.get_by_role("button", name="Train", exact=True).click()
    _stop(a).wait_for(timeout=30_000)
    t0 = time.perf_counter()
    b.get_by_role("button", name="Train", exact=True).click()
    b.get_by_text("Mixture: epoch").first.wait_for(timeout=60_000)
    first_epoch = time.perf_counter() - t0
    a_still_training = _stop(a).count() > 0
    _wait_saved(server, before + 2)
    for page in (a, b):
        page.get_by_role("heading", name="Results", exact=True).wait_for(timeout=120_000)
        _wait_done(page)
    both = time.perf_counter() - t0
    side_a = a.locator('[data-testid="stSidebar"]').inner_text()
    side_b = b.locator('[data-testid="stSidebar"]').inner_text()
    assert "2 × MLP" in side_a and "4 × MLP" in side_b, (side_a, side_b)
    print(
        f"\n[concurrency] one session alone: {alone:.1f} s; with both training: B's first epoch after "
        f"{first_epoch:.1f} s (A still training: {a_still_training}), both done after {both:.1f} s"
    )
    assert first_epoch < 30  # B starts right away instead of queueing behind A's training
    # Two sessions share the cores: together they take about twice as long as one, not many times longer (a full
    # gc.collect after every redraw once made it 6-10x; see .streamlit/config.toml).
    assert both < 4 * alone + 30, (alone, both)

    # A long run in A must not freeze B: B switches pages and gets its answer quickly while A trains.
    a.goto(f"{server['url']}/?{QUICK}&model.n_experts=2&train.epochs=2000", wait_until="domcontentloaded")
    a.get_by_role("button", name="Train", exact=True).click()
    _stop(a).wait_for(timeout=30_000)
    latencies = []
    for name, title in (("Runs", "Saved runs"), ("Train", "Train a mixture of experts"), ("Runs", "Saved runs")):
        t0 = time.perf_counter()
        b.locator(NAV_LINK).filter(has_text=name).first.click()
        b.locator('[data-testid="stMain"] h1').filter(has_text=title).first.wait_for(timeout=30_000)
        latencies.append(time.perf_counter() - t0)
        _wait_idle(b, timeout=60)
    assert _stop(a).is_visible(), "A's training ended early"
    _stop(a).click()
    a.get_by_role("heading", name="Results", exact=True).wait_for(timeout=60_000)
    _wait_done(a)
    sidebar = a.locator('[data-testid="stSidebar"]').inner_text()
    assert "stopped" in sidebar
    print(f"[concurrency] page switches in B while A trains: {', '.join(f'{x:.2f} s' for x in latencies)}")
    assert max(latencies) < 15, latencies
    a.close()
    b.close()


def test_compare_page_runs_a_tiny_comparison(server, browser):
    """Issue 6: the Compare page in a real browser: set a tiny comparison, run it, see the verdict and its charts."""
    page = browser.new_page(viewport={"width": 1500, "height": 1800})
    page.goto(f"{server['url']}/compare?data.options.n_samples=300", wait_until="domcontentloaded")
    page.locator('[data-testid="stMain"] h1').filter(has_text="Compare gates").first.wait_for(timeout=60_000)
    _wait_idle(page)
    for label, value in (("Seeds", "2"), ("Epochs (at most)", "3"), ("Expert layer widths", "4")):
        field = page.get_by_label(label, exact=True)
        field.fill(value)
        field.press("Tab")
    page.get_by_role("button", name="Run comparison").click()
    page.get_by_text("Gate weights on the same test rows").first.wait_for(timeout=240_000)
    _wait_idle(page, timeout=120)
    _no_exception(page, "Compare page after a comparison")
    main = page.locator('[data-testid="stMain"]')
    charts = page.locator(f'[data-testid="stMain"] :is({CHART})')
    deadline = time.time() + 60
    while charts.count() < 4 and time.time() < deadline:  # vega-embed draws each chart a moment after the rerun
        page.wait_for_timeout(250)
    assert charts.count() >= 4, f"expected metric, curves, cost and gate charts, found {charts.count()}"
    text = main.inner_text()
    assert "8 runs" in text, text[:2000]  # 3 gates + the plain model, 2 seeds each
    for gate in ("linear", "grn", "grkan", "standard"):
        assert gate in text.lower(), f"{gate} missing from the results"
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "compare_done.png"), full_page=True)
    page.close()


MENU = ["Train", "Splines", "Gates", "Experts", "Compare", "Attribution", "Runs"]  # app.py's pages, in order


@pytest.mark.parametrize("address, heading", [("/", "Train a mixture of experts"), ("/compare", "Compare gates")])
def test_a_fresh_servers_first_request_shows_only_the_apps_menu(browser, tmp_path, address, heading):
    """The first request of a new server (a fresh start, or a tab left on /compare while the server restarted):
    from the first byte on, the sidebar never lists a file of pages/ or a helper module (Streamlit's older folder
    mode builds such a menu until a session calls st.navigation; see kamoe_viz_app/navigation.py), and the page
    comes up inside the app, with its menu and sidebar."""
    with app_server(tmp_path / "runs", tmp_path / "server.log") as url:
        page = browser.new_page(viewport={"width": 1500, "height": 1200})
        page.add_init_script(SIDEBAR_RECORDER)
        page.goto(f"{url}{address}", wait_until="domcontentloaded")
        page.locator('[data-testid="stMain"] h1').filter(has_text=heading).first.wait_for(timeout=90_000)
        _wait_idle(page)
        _no_exception(page, f"{address} opened first")
        seen = page.evaluate("window.__sidebars")
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / f"fresh_server_{address.strip('/') or 'root'}.png"))
        assert [s["links"][: len(MENU)] for s in seen if s["links"]][-1] == MENU, seen  # the menu was drawn
        for state in seen:
            assert state["folder_menu"] is None, f"Streamlit's folder menu showed: {state}"
            shown = state["links"][: len(MENU)]  # the menu may be caught half drawn, never with another entry
            assert shown == MENU[: len(shown)], f"the sidebar listed something else: {state}"
        sidebar = page.locator('[data-testid="stSidebar"]').inner_text()
        assert "Current run" in sidebar and "No model yet" in sidebar  # app.py's sidebar was drawn
        page.close()


def test_reloading_during_training_offers_the_running_training(server, browser):
    """F5 while training: the new session is told that the training runs on, and can watch it again."""
    page = _new_page(browser, f"{server['url']}/?{QUICK}&train.epochs=3000")
    page.get_by_role("button", name="Train", exact=True).click()
    _stop(page).wait_for(timeout=30_000)
    page.reload(wait_until="domcontentloaded")
    page.get_by_text("A training is still running on this server").first.wait_for(timeout=60_000)
    page.get_by_role("button", name="Watch it here").first.click()
    _stop(page).wait_for(timeout=30_000)  # its live panel is back, with Stop
    page.get_by_text("Mixture: epoch").first.wait_for(timeout=30_000)
    _stop(page).click()
    page.get_by_role("heading", name="Results", exact=True).wait_for(timeout=60_000)
    _wait_done(page)
    _no_exception(page, "after taking over a training")
    assert "stopped" in page.locator('[data-testid="stSidebar"]').inner_text()
    page.close()


def _sidebar_run_id(page) -> str:
    text = page.locator('[data-testid="stSidebar"]').inner_text()
    return text.split("Run id:", 1)[1].split()[0] if "Run id:" in text else ""


def test_switching_to_a_recent_run_happens_once(server, browser):
    """The sidebar's recent-run box switches once, goes back to its placeholder, and later clicks elsewhere do not
    switch again (it used to keep the pick in the browser and switch on every click)."""
    page = _new_page(browser, f"{server['url']}/?{QUICK.replace('120', '5')}")
    _train(page, server)
    first = _sidebar_run_id(page)
    page.get_by_role("button", name="Train", exact=True).click()
    _wait_saved(server, _saved(server) + 1)
    _wait_done(page)
    second = _sidebar_run_id(page)
    assert first and second and first != second
    box = page.locator('[data-testid="stSidebar"] [data-testid="stSelectbox"]').first
    box.click()
    options = page.locator('[role="option"]')
    assert first in options.nth(1).inner_text()  # the label names the run: same settings still read differently
    options.nth(1).click()
    _wait_idle(page)
    assert _sidebar_run_id(page) == first
    for width in ("17", "16", "18"):  # unrelated changes, each a rerun: the current run stays
        field = page.get_by_label("Expert hidden sizes", exact=True)
        field.fill(width)
        field.press("Enter")
        _wait_idle(page)
        assert _sidebar_run_id(page) == first
    _no_exception(page, "after switching runs")
    page.close()
