"""Live training on the Train page: the session's LiveJob trains in a background thread; a self-refreshing
fragment shows its progress, loss curves and gate weights, and offers Stop.

The page stays responsive while training (widgets, other pages), Stop is honoured after the current epoch, and
other browser sessions keep their share of the CPU. The job, its models and results live in this session only.
"""

from __future__ import annotations

from functools import partial
from typing import Any

import streamlit as st

from kamoe_viz.charts import training as ct
from kamoe_viz.config import RunConfig
from kamoe_viz.data.base import Dataset
from kamoe_viz.errors import KamoeError
from kamoe_viz.training.live import BASELINE, MAIN, LiveJob, Stage, background_jobs
from kamoe_viz.training.restarts import restarts_notice
from kamoe_viz_app import state
from kamoe_viz_app.safe import unexpected

JOB = state.TRAIN_JOB
BASELINES = "_baselines"  # run key -> baseline metrics (this session)
LOAD_HISTORY = "load_history"  # run_cached name: per-epoch expert load recorded while training
REFRESH_SECONDS = 0.7  # how often the live view redraws
BURST_SECONDS = 0.5  # the background thread checks for Stop this often (and after every epoch at least)


def job() -> LiveJob | None:
    return st.session_state.get(JOB)


def busy() -> bool:
    j = job()
    return j is not None and j.running


def _begin(new: LiveJob) -> None:
    st.session_state[JOB] = new
    new.start_background(BURST_SECONDS)


def start(config: RunConfig, dataset: Dataset, with_baseline: bool, csv: bytes | None = None) -> str | None:
    """Begin training ``config`` on ``dataset`` in the background; returns an error message instead of raising."""
    try:
        store = state.run_store()
    except (KamoeError, OSError) as err:
        store = None
        st.warning("The server's runs folder cannot be used; this run will not be saved.")
        unexpected(err, "Opening the runs folder")
    try:
        with st.spinner(restarts_notice(config.train) or "Building the model…"):
            new = LiveJob.start(config, dataset, with_baseline, store=store, csv=csv)
    except KamoeError as err:
        return str(err)
    except Exception as err:  # a setting the library did not foresee: message, not a crash
        return f"Could not build the model: {type(err).__name__}: {err}"
    st.session_state.pop(state.PLAYGROUND_SESSION, None)  # the new model takes the playground's place
    _begin(new)
    return None


def unwatched_jobs_notice() -> None:
    """Trainings of this server that no session of this browser watches (e.g. the page was reloaded while it
    trained: the old session, and its reference to the job, is gone, but the job trains on and will be saved)."""
    mine = job()
    others = [j for j in background_jobs() if j is not mine]
    for index, other in enumerate(others[:3]):
        box = st.container(border=True)
        box.markdown(
            f"**A training is still running on this server** (started in another tab, or before this "
            f"page was reloaded): {other.describe()}. When it finishes it is saved to the runs folder "
            f"(Runs page)."
        )
        if box.button(
            "Watch it here",
            key=f"adopt_{index}",
            icon=":material/visibility:",
            help="Show its live progress on this page and make it the current run when it is done.",
        ):
            st.session_state[JOB] = other
            other.touch()
            st.rerun()


def start_baseline(run: Any) -> str | None:
    """Train only the plain baseline of an existing run (on demand)."""
    try:
        _begin(LiveJob.baseline_for(run))
    except KamoeError as err:
        return str(err)
    return None


def baseline_metrics(run: Any) -> dict | None:
    return st.session_state.get(BASELINES, {}).get(state.run_key(run))


def drain() -> list[str]:
    """Take over what the background job finished: the run becomes current; a baseline's scores are kept.

    Called on every rerun of every page (from app.py) and by the live fragment, so a run that finishes while the
    user looks at another page is picked up on their next click.
    """
    j = job()
    if j is None:
        return []
    j.touch()
    events = j.pop_events()
    for event in events:
        if event == MAIN and j.run is not None:
            run = j.run
            state.set_current_run(run)
            epochs = list(j.stages[0].epochs)
            state.run_cached(
                run, LOAD_HISTORY, partial(ct.load_history_frame, epochs, run.config.model.gate_activation)
            )
        elif event == BASELINE and j.run is not None and j.baseline is not None:
            st.session_state.setdefault(BASELINES, {})[state.run_key(j.run)] = dict(
                j.baseline.metrics, epochs_run=j.baseline.epochs_run
            )
    return events


def _progress(stage: Stage, epochs: list) -> tuple[float, str]:
    total = stage.total_epochs
    label = "Mixture" if stage.kind == MAIN else "Plain baseline (single expert)"
    if not epochs:
        return 0.0, f"{label}: starting…"
    last = epochs[-1]
    eta = last.eta_seconds
    eta_text = f" · at most {eta:.0f} s left" if isinstance(eta, (int, float)) and eta == eta else ""
    text = (
        f"{label}: epoch {last.epoch}/{total} · train loss {last.train_loss:.4g} · "
        f"val loss {last.val_loss:.4g}{eta_text}"
    )
    return min(1.0, last.epoch / max(1, total)), text


def render_live_charts(stage: Stage, epochs: list) -> None:
    """Loss curves, gate-weight distribution and expert load of the stage so far."""
    if not epochs:
        return
    left, right = st.columns(2)
    left.altair_chart(
        ct.loss_chart(ct.history_frame(epochs), best_epoch=epochs[-1].best_epoch),
        width="stretch",
        height=ct.chart_height("loss"),
    )
    if stage.kind != MAIN:
        right.caption("The baseline is one expert without a gate: there are no gate weights to show.")
        return
    weights = epochs[-1].gate_weights
    if weights is not None and bool(getattr(weights, "size", None)):
        right.altair_chart(ct.gate_distribution_chart(ct.gate_weight_frame(weights)), width="stretch")
    loads = ct.load_history_frame(epochs, stage.config.model.gate_activation)
    if len(loads):
        left.altair_chart(ct.load_chart(loads, height=160), width="stretch", height=ct.chart_height("load"))


def live_panel() -> None:
    """The live area: Stop button, progress, charts; redraws itself every REFRESH_SECONDS while training."""
    if not busy():
        return

    @st.fragment(run_every=REFRESH_SECONDS)
    def panel() -> None:
        current = job()
        if current is None:
            return
        events = drain()
        if MAIN in events or not current.running:
            st.rerun(scope="app")  # redraw the whole page: results, sidebar (and settings once all is done)
        stage = current.stage or current.stages[-1]
        if st.button(
            "Stop",
            icon=":material/stop_circle:",
            key="stop_training",
            help="Stop after the current epoch and keep the model trained so far (its best weights).",
        ):
            current.request_stop()
        if current._stop_requested:
            st.caption("Stopping after the current epoch…")
        epochs = list(stage.epochs)
        fraction, text = _progress(stage, epochs)
        st.progress(fraction, text=text)
        render_live_charts(stage, epochs)

    panel()
