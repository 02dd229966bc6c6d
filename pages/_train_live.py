"""Live training on the Train page: the session's LiveJob advanced in short bursts by a self-refreshing fragment.

Each rerun of the fragment trains for a fraction of a second and redraws the progress bar and charts, so the page
stays responsive, Stop is honoured within one burst, and other browser sessions keep their share of the CPU.
The job, its models and results live in this session's state only.
"""
from __future__ import annotations

from typing import Any

import streamlit as st

from kamoe_viz import charts_training as ct
from kamoe_viz.config import RunConfig
from kamoe_viz.errors import KamoeError
from kamoe_viz.live import BASELINE, MAIN, LiveJob, Stage
from pages import _state

JOB = "_train_job"
BASELINES = "_baselines"  # run key -> baseline metrics (this session)
NOTES = "_train_notes"  # messages about the last job (e.g. the run could not be saved)
LOAD_HISTORY = "load_history"  # run_cached name: per-epoch expert load recorded while training
BURST_SECONDS = 0.35
REFRESH_SECONDS = 0.5


def job() -> LiveJob | None:
    return st.session_state.get(JOB)


def start(config: RunConfig, dataset: Any, with_baseline: bool, csv: bytes | None = None) -> str | None:
    """Begin training ``config`` on ``dataset``; returns an error message instead of raising."""
    try:
        new = LiveJob.start(config, dataset, with_baseline)
    except KamoeError as err:
        return str(err)
    except Exception as err:  # a setting the library did not foresee: message, not a crash
        return f"Could not build the model: {type(err).__name__}: {err}"
    new.csv = csv  # the uploaded CSV, stored with the run so it reloads without the upload
    st.session_state[JOB] = new
    st.session_state[NOTES] = []
    return None


def start_baseline(run: Any) -> str | None:
    """Train only the plain baseline for an existing run (on demand)."""
    try:
        st.session_state[JOB] = LiveJob.baseline_for(run)
    except KamoeError as err:
        return str(err)
    st.session_state[NOTES] = []
    return None


def baseline_metrics(run: Any) -> dict | None:
    return st.session_state.get(BASELINES, {}).get(_state.run_key(run))


def _handle(j: LiveJob, events: list[str], epochs: list) -> None:
    """Save and show a finished mixture; remember a finished baseline's scores."""
    for event in events:
        if event == MAIN and j.run is not None:
            run = j.run
            try:
                _state.run_store().save(run, csv=getattr(j, "csv", None))
            except (KamoeError, OSError) as err:
                st.session_state.setdefault(NOTES, []).append(
                    f"The run could not be saved to {_state.runs_dir()}: {err} It stays open in this session.")
            _state.set_current_run(run)
            _state.run_cached(run, LOAD_HISTORY,
                              lambda: ct.load_history_frame(epochs, run.config.model.gate_activation))
        elif event == BASELINE and j.run is not None and j.baseline is not None:
            st.session_state.setdefault(BASELINES, {})[_state.run_key(j.run)] = dict(
                j.baseline.metrics, epochs_run=j.baseline.epochs_run)


def _progress(stage: Stage) -> tuple[float, str]:
    total = stage.total_epochs
    label = "Mixture" if stage.kind == MAIN else "Plain baseline (single expert)"
    if not stage.epochs:
        return 0.0, f"{label}: starting…"
    last = stage.epochs[-1]
    eta = last.eta_seconds
    eta_text = f" · at most {eta:.0f} s left" if isinstance(eta, (int, float)) and eta == eta else ""
    text = (f"{label}: epoch {last.epoch}/{total} · train loss {last.train_loss:.4g} · "
            f"val loss {last.val_loss:.4g}{eta_text}")
    return min(1.0, last.epoch / max(1, total)), text


def render_live_charts(stage: Stage) -> None:
    """Loss curves, gate-weight distribution and expert load of the stage so far."""
    epochs = stage.epochs
    if not epochs:
        return
    left, right = st.columns(2)
    left.altair_chart(ct.loss_chart(ct.history_frame(epochs), best_epoch=epochs[-1].best_epoch), width="stretch")
    if stage.kind != MAIN:
        right.caption("The baseline is one expert without a gate: there are no gate weights to show.")
        return
    weights = epochs[-1].gate_weights
    if weights is not None and getattr(weights, "size", 0):
        right.altair_chart(ct.gate_distribution_chart(ct.gate_weight_frame(weights)), width="stretch")
    loads = ct.load_history_frame(epochs, stage.config.model.gate_activation)
    if len(loads):
        left.altair_chart(ct.load_chart(loads, height=160), width="stretch")


def live_panel() -> None:
    """The live area: Stop button, progress, charts; reruns itself every REFRESH_SECONDS while training."""
    j = job()
    if j is None or not j.active:
        return

    @st.fragment(run_every=REFRESH_SECONDS)
    def panel() -> None:
        current = job()
        if current is None:
            return
        if current.active:
            stage = current.stage
            epochs = stage.epochs
            if st.button("Stop", icon=":material/stop_circle:", key="stop_training",
                         help="Stop now and keep the model trained so far (its best weights)."):
                _handle(current, current.stop(), epochs)
            else:
                _handle(current, current.advance(BURST_SECONDS), epochs)
        if not current.active:
            st.rerun(scope="app")  # redraw the whole page: results, sidebar, enabled settings
        stage = current.stage
        fraction, text = _progress(stage)
        st.progress(fraction, text=text)
        render_live_charts(stage)

    panel()
