"""Shared by the browser tests: a real `streamlit run app.py` server and small page helpers (Playwright)."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]
EXCEPTION = '[data-testid="stException"]'
NAV_LINK = ".st-key-app_nav a"  # the app's page menu in the sidebar (kamoe_viz_app/navigation.py: MENU_KEY)
# Run in the page before any of its scripts: records every distinct set of sidebar links (and Streamlit's built-in
# folder menu, stSidebarNav, should it ever appear) from the first byte of the response, in window.__sidebars.
SIDEBAR_RECORDER = """
window.__sidebars = [];
const seen = new Set();
const record = () => {
  const side = document.querySelector('[data-testid="stSidebar"]');
  const folder = document.querySelector('[data-testid="stSidebarNav"]');
  const links = side ? Array.from(side.querySelectorAll('a')).map(a => a.innerText.trim().split('\\n').pop().trim())
                            .filter(t => t) : [];
  const entry = {links: links, folder_menu: folder ? folder.innerText : null};
  const key = JSON.stringify(entry);
  if (!seen.has(key)) { seen.add(key); window.__sidebars.push(entry); }
};
new MutationObserver(record).observe(document, {subtree: true, childList: true, characterData: true});
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def app_server(runs: Path, log_path: Path, app_args: tuple[str, ...] = (), env: dict[str, str] | None = None):
    """A real `streamlit run app.py` on a free port, with its own runs folder; yields its URL once healthy.
    ``app_args`` go to the app after `--` (its server flags, e.g. --runs-dir)."""
    port = free_port()
    env = dict(os.environ, KAMOE_RUNS_DIR=str(runs), STREAMLIT_BROWSER_GATHER_USAGE_STATS="false", **(env or {}))
    log = log_path.open("w")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "streamlit",
            "run",
            "app.py",
            "--server.headless",
            "true",
            "--server.port",
            str(port),
            "--server.address",
            "127.0.0.1",
            *(("--", *app_args) if app_args else ()),
        ],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 90
        while time.time() < deadline:
            try:
                if urllib.request.urlopen(url + "/_stcore/health", timeout=2).read() == b"ok":
                    break
            except OSError:
                time.sleep(0.5)
            if proc.poll() is not None:
                raise RuntimeError(f"streamlit exited with {proc.returncode}; see {log_path}")
        else:
            raise RuntimeError("streamlit did not become healthy in 90 s")
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


def wait_idle(page, timeout: float = 60) -> None:
    """Wait until the app is not running a script (the status widget disappears)."""
    page.wait_for_timeout(300)
    page.wait_for_selector('[data-testid="stStatusWidget"]', state="detached", timeout=timeout * 1000)


def no_exception(page, where: str) -> None:
    errors = page.locator(EXCEPTION)
    assert errors.count() == 0, f"{where}: Streamlit exception shown: {errors.first.inner_text()[:500]}"
