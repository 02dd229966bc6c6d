"""Shared helpers for the AppTest tests of the Streamlit app (not a test module itself)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from streamlit.testing.v1 import AppTest

from kamoe_viz_app import navigation

ROOT = Path(__file__).resolve().parents[1]
APP = str(ROOT / "app.py")
PAGES = [p.path for p in navigation.PAGES]
# Tiny, quick settings for the default dataset, given the way a shared link gives them.
TINY = {
    "model.expert_hidden": "8",
    "model.n_experts": "2",
    "train.epochs": "4",
    "train.early_stopping": "0",
    "train.batch_size": "256",
}
JOB = "_train_job"


def new_app(query: dict[str, str] | None = None, timeout: float = 120) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=timeout)
    if query:
        at.query_params.update(query)
    return at.run()


def button(at: AppTest, label: str):
    found = [b for b in at.button if b.label == label]
    assert found, f"no button {label!r}; buttons: {[b.label for b in at.button]}"
    return found[0]


def no_exception(at: AppTest, where: str = "") -> None:
    assert not at.exception, f"{where}: {[e.value for e in at.exception]}"


def job(at: AppTest) -> Any:
    return at.session_state.get(JOB)


def train_until_done(at: AppTest, timeout: float = 240) -> AppTest:
    """Click Train, then rerun (as the live fragment's timer does in a browser) until the background job ends."""
    button(at, "Train").click().run()
    no_exception(at, "after Train")
    deadline = time.monotonic() + timeout
    while job(at) is not None and job(at).running:
        assert time.monotonic() < deadline, "training did not finish"
        time.sleep(0.2)
        at.run()
        no_exception(at, "while training")
    at.run()  # the rerun a browser makes when the job has ended
    no_exception(at, "after training")
    assert job(at) is not None and job(at).finished, "training did not finish"
    return at


def charts(at: AppTest) -> list:
    return list(at.get("vega_lite_chart")) + list(at.get("arrow_vega_lite_chart"))


def errors_text(at: AppTest) -> str:
    return "\n".join(e.value for e in at.error)
