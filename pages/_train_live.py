"""Live training on the Train page: a job of stages (the mixture, then its plain baseline) advanced in short bursts.

Each rerun of the live fragment trains for a fraction of a second (``Trainer.run_epochs(1)`` until the burst's time
is used) and redraws the progress bar and charts, so the page stays responsive, Stop is honoured within one burst,
and other browser sessions keep their share of the CPU. Everything lives in this session's state.
"""
from __future__ import annotations

import time
import traceback
from dataclasses import dataclass, field
from typing import Any

import streamlit as st

from kamoe_viz import charts_training as ct
from kamoe_viz.config import RunConfig
from kamoe_viz.errors import KamoeError
from pages import _state

JOB = "_train_job"
BASELINES = "_baselines"  # run key -> baseline metrics
LOAD_HISTORY = "load_history"  # run_cached name: per-epoch expert load recorded while training
BURST_SECONDS = 0.35
REFRESH_SECONDS = 0.5


@dataclass
class Stage:
    kind: str  # "main" | "baseline"
    config: RunConfig
    model: Any
    trainer: Any
    epochs: list = field(default_factory=list)
    started: float = field(default_factory=time.perf_counter)


@dataclass
class Job:
    dataset: Any
    stages: list[Stage]
    index: int = 0
    run: Any = None  # the TrainedRun of the main stage once it finished
    error: str | None = None
    notes: list[str] = field(default_factory=list)
    finished: bool = False

    @property
    def stage(self) -> Stage | None:
        return self.stages[self.index] if self.index < len(self.stages) else None

    @property
    def active(self) -> bool:
        return not self.finished and self.stage is not None


def job() -> Job | None:
    return st.session_state.get(JOB)


def _make_stage(kind: str, config: RunConfig, dataset: Any) -> Stage:
    from kamoe_viz.nn import build_model
    from kamoe_viz.training import Trainer

    model = build_model(config.model, dataset)
    return Stage(kind, config, model, Trainer(model, dataset, config.train))


def start(config: RunConfig, dataset: Any, with_baseline: bool) -> str | None:
    """Begin training ``config`` on ``dataset``; returns an error message instead of raising."""
    from kamoe_viz.training import baseline_config

    try:
        stages = [_make_stage("main", config, dataset)]
        if with_baseline:
            stages.append(_make_stage("baseline", baseline_config(config), dataset))
    except KamoeError as err:
        return str(err)
    except Exception as err:  # a setting the library did not foresee: message, not a crash
        return f"Could not build the model: {type(err).__name__}: {err}"
    st.session_state[JOB] = Job(dataset=dataset, stages=stages)
    return None


def start_baseline(run: Any) -> str | None:
    """Train only the plain baseline for an existing run (on demand)."""
    from kamoe_viz.training import baseline_config

    try:
        stage = _make_stage("baseline", baseline_config(run.config), run.dataset)
    except KamoeError as err:
        return str(err)
    st.session_state[JOB] = Job(dataset=run.dataset, stages=[stage], run=run)
    return None


def baseline_metrics(run: Any) -> dict | None:
    return st.session_state.get(BASELINES, {}).get(_state.run_key(run))


def _finish_stage(j: Job, stage: Stage) -> None:
    from kamoe_viz.training import TrainedRun

    result = stage.trainer.finish()
    if stage.kind == "main":
        run = TrainedRun(config=stage.config, dataset=j.dataset, model=stage.model.cpu().eval(), result=result)
        try:
            run.run_id = _state.run_store().save(run)
        except (KamoeError, OSError) as err:
            j.notes.append(f"The run could not be saved to {_state.runs_dir()}: {err}. It stays open in this "
                           "session.")
        _state.set_current_run(run)
        _state.run_cached(run, LOAD_HISTORY,
                          lambda: ct.load_history_frame(stage.epochs, stage.config.model.gate_activation))
        j.run = run
        if result.stopped_reason == "stopped" and len(j.stages) > j.index + 1:
            j.stages = j.stages[: j.index + 1]  # Stop during the mixture also skips the baseline
    else:
        target = j.run
        if target is not None:
            st.session_state.setdefault(BASELINES, {})[_state.run_key(target)] = dict(result.metrics,
                                                                                    epochs_run=result.epochs_run)
    j.index += 1
    if j.index >= len(j.stages):
        j.finished = True


def advance(j: Job, budget: float = BURST_SECONDS) -> None:
    """Train the current stage for about ``budget`` seconds (at least one epoch)."""
    stage = j.stage
    if stage is None:
        j.finished = True
        return
    t0 = time.perf_counter()
    try:
        while not stage.trainer.done:
            stage.epochs.extend(stage.trainer.run_epochs(1))
            if time.perf_counter() - t0 >= budget:
                break
        if stage.trainer.done:
            _finish_stage(j, stage)
    except KamoeError as err:
        j.error = str(err)
        j.finished = True
    except Exception as err:  # never crash the page; keep the message and the traceback for a bug report
        j.error = f"Training failed: {type(err).__name__}: {err}"
        j.notes.append(traceback.format_exc(limit=4))
        j.finished = True


def stop(j: Job) -> None:
    """Stop the current stage (keeping what it learned) and skip the stages after it."""
    stage = j.stage
    if stage is None:
        return
    stage.trainer.stop()
    j.stages = j.stages[: j.index + 1]
    try:
        _finish_stage(j, stage)
    except Exception as err:
        j.error = f"Stopping failed: {type(err).__name__}: {err}"
        j.finished = True


def _progress_text(stage: Stage) -> tuple[float, str]:
    total = stage.config.train.epochs
    label = "Mixture" if stage.kind == "main" else "Baseline (single expert)"
    if not stage.epochs:
        return 0.0, f"{label}: starting…"
    last = stage.epochs[-1]
    eta = getattr(last, "eta_seconds", None)
    eta_text = f" · about {eta:.0f} s left" if isinstance(eta, (int, float)) and eta == eta else ""
    text = (f"{label}: epoch {last.epoch}/{total} · train loss {last.train_loss:.4g} · "
            f"val loss {last.val_loss:.4g}{eta_text}")
    return min(1.0, last.epoch / max(1, total)), text


def render_live_charts(stage: Stage, key_suffix: str = "") -> None:
    """Loss curves, gate-weight distribution and expert load of the stage so far."""
    epochs = stage.epochs
    if not epochs:
        return
    best = getattr(epochs[-1], "best_epoch", None)
    left, right = st.columns(2) if stage.kind == "main" else (st.container(), None)
    left.altair_chart(ct.loss_chart(ct.history_frame(epochs), best_epoch=best), width="stretch")
    if right is None:
        return
    weights = getattr(epochs[-1], "gate_weights", None)
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
            if st.button("Stop", icon=":material/stop_circle:", type="secondary", key="stop_training",
                         help="Stop now and keep the model trained so far (best weights)."):
                stop(current)
            else:
                advance(current)
        if not current.active:
            st.rerun(scope="app")  # redraw the whole page: results, sidebar, enabled settings
        stage = current.stage
        fraction, text = _progress_text(stage)
        st.progress(fraction, text=text)
        render_live_charts(stage)

    panel()
