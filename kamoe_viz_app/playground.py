"""Playground controls on the Train page: Play, Pause, Step, Reset, New data, a speed, an always-visible
``Epoch N / M`` line, and live views that redraw while the session plays (a self-refreshing fragment).

The session (:class:`kamoe_viz.training.session.TrainingSession`) trains in this browser session's script thread,
one tick per refresh, so a paused session costs nothing. When training ends its run (with the timeline) becomes the
current run and is saved, so the Gates, Splines and Experts pages can scrub back through it.
"""

from __future__ import annotations

from typing import Any

import pandas as pd
import streamlit as st

from kamoe_viz.charts import timeline as tc
from kamoe_viz.charts import training as ct
from kamoe_viz.charts.live import LiveSpecs
from kamoe_viz.config import RunConfig
from kamoe_viz.data.base import Dataset
from kamoe_viz.errors import KamoeError
from kamoe_viz.training.restarts import restarts_notice
from kamoe_viz.training.session import (
    DEFAULT_SPEED,
    FIXED_DATA_REASON,
    LOCK_REASON,
    SPEEDS,
    TrainingSession,
    is_generated,
    live_changes,
)
from kamoe_viz.training.timeline import MAX_SNAPSHOTS
from kamoe_viz_app import config_state as cfg
from kamoe_viz_app import state
from kamoe_viz_app import timeline_ui as tl_ui

SESSION = state.PLAYGROUND_SESSION
SPEED = "playground_speed"
ERROR = "_playground_error"
POINTS = "_playground_points"  # (dataset id, data points frame)
MAP_SIZE = 190  # px per live map: two maps with their axes fit half the Train page's right column at 1400 px
SPECS = "_playground_specs"  # LiveSpecs: the live charts' kept specs
TRANSPORT = ("Play", "Pause", "Step", "Reset", "New data")
END_HERE = "End here"  # a paused model becomes the current run now, without training to the last epoch


def session() -> TrainingSession | None:
    return st.session_state.get(SESSION)


def follow_current_run() -> None:
    """Keep one model in front of the user: a playground that is not training shows the current run.

    A session played to its end, or none, gives way to the current run when that run is another one (trained with
    the one-click Train, picked in the sidebar, reloaded from the Runs page): the panel then reads ``Epoch N / M ·
    finished`` with that run's views, and Play or Step start a new model from epoch 0, as after any finished
    session. A run without a timeline (saved before timelines) leaves the panel empty. A session in the middle of
    its training is never replaced here."""
    s, run = session(), state.current_run()
    if s is not None and (not s.done or s.run is run):
        return
    if run is not None and getattr(run, "timeline", None) is not None and run.timeline.snapshots:
        st.session_state[SESSION] = TrainingSession.of_run(run)
    else:
        st.session_state.pop(SESSION, None)


def playing() -> bool:
    s = session()
    return s is not None and s.playing


def locked() -> str | None:
    """Why model and data settings are locked now (a model is being trained step by step), or None."""
    s = session()
    return LOCK_REASON if s is not None and s.in_progress else None


def _ensure(config: RunConfig, dataset: Dataset) -> TrainingSession | None:
    """The session to act on: the current one with live settings applied, or a new one for changed settings."""
    s = session()
    try:
        if s is not None and not s.done:
            live, others = live_changes(s.config, config)
            if not others:
                if live:
                    s.update(**live)
                return s
        with st.spinner(restarts_notice(config.train) or "Building the model…"):
            s = TrainingSession(config, dataset)
    except KamoeError as err:
        st.session_state[ERROR] = str(err)
        return None
    st.session_state[SESSION] = s
    return s


def _finished(s: TrainingSession) -> None:
    """Training ended: make the run current (with its timeline) and save it."""
    run = s.finish()
    if state.current_run() is run:
        return
    try:
        run.run_id = state.run_store().save(run)
    except (KamoeError, OSError) as err:
        st.session_state[ERROR] = f"The run could not be saved: {err} It stays open in this session."
    state.set_current_run(run)


def _act(action: str, config: RunConfig, dataset: Dataset) -> None:
    st.session_state.pop(ERROR, None)
    s = session()
    if action == "Pause":
        if s is not None:
            s.pause()
        return
    if action == END_HERE:
        if s is not None and not s.done:
            _finished(s)
        return
    if action == "Reset":
        s = _ensure(config, dataset)
        if s is not None and s.epoch:
            s.reset()
        return
    if action == "New data":
        s = _ensure(config, dataset)
        if s is not None:
            try:
                s.new_data()
            except KamoeError as err:
                st.session_state[ERROR] = str(err)
            else:  # the Data seed box follows, so the next Play keeps the new data
                st.session_state[cfg.widget_key("data.seed")] = int(s.config.data.seed)
        return
    s = _ensure(config, dataset)
    if s is None:
        return
    if s.done:  # a finished session starts over
        s.reset()
    if action == "Step":
        s.step()
    else:
        s.play()
    if s.done:
        _finished(s)


def controls(config: RunConfig | None, dataset: Dataset, ready: bool, busy: bool) -> None:
    """The transport buttons, the speed and the live area."""
    follow_current_run()
    s = session()
    playing = s is not None and s.playing
    off = busy or not ready
    why = "Fix the messages above first." if not ready else ("A training is running; stop it first." if busy else None)
    cols = st.columns(len(TRANSPORT), vertical_alignment="center")
    helps = {
        "Play": "Train epoch after epoch, redrawing the views; continues from where Pause left off. A new "
        "learning rate or balance-loss weight applies from the next epoch.",
        "Pause": "Stop after this epoch; Step or Play continue from here.",
        "Step": "Train exactly one epoch.",
        "Reset": "Re-initialise the model with the same seed (same data, current settings).",
        "New data": "Draw the dataset again with the next data seed, then reset.",
    }
    generated = config is not None and is_generated(config.data.name)
    for col, label in zip(cols, TRANSPORT):
        disabled = off or (label == "Play" and playing) or (label == "Pause" and not playing)
        help_text = why or helps[label]
        if label == "New data" and not generated:
            disabled, help_text = True, FIXED_DATA_REASON
        col.button(
            label,
            key=f"pg_{label.replace(' ', '_').lower()}",
            disabled=disabled,
            help=help_text,
            on_click=_act,
            args=(label, config, dataset),
            width="stretch",
        )
    speed_col, end_col = st.columns([3, 1], vertical_alignment="bottom")
    mid_run = s is not None and s.in_progress
    end_col.button(
        END_HERE,
        key="pg_end_here",
        icon=":material/flag:",
        disabled=off or playing or not mid_run,
        help=why or _end_here_help(playing, mid_run),
        on_click=_act,
        args=(END_HERE, config, dataset),
        width="stretch",
    )
    speed_col.segmented_control(
        "Speed",
        list(SPEEDS),
        default=DEFAULT_SPEED,
        key=SPEED,
        help="How fast Play trains: as fast as the machine goes (real time), or one epoch per second "
        "or five per second to narrate.",
    )
    if mid_run:
        st.caption(
            "Settings that fix the model or its data are locked until Reset; the learning rate and the balance "
            "loss weight stay open and apply from the next epoch."
        )
    if st.session_state.get(ERROR):
        st.error(st.session_state[ERROR], icon=":material/error:")
    live_area(config)


def _end_here_help(playing: bool, mid_run: bool) -> str:
    if playing:
        return "Pause first, then end training at the epoch reached."
    if mid_run:
        return (
            "End training at this epoch: the model (its best weights so far) becomes the current run and is "
            "saved, with its timeline up to here, for the Gates, Splines and Experts pages."
        )
    return "Available once a model is paused part-way (Step, or Play then Pause)."


def live_area(config: RunConfig | None) -> None:
    s = session()
    speed = st.session_state.get(SPEED) or DEFAULT_SPEED
    every = SPEEDS[speed][1] if s is not None and s.playing else None

    @st.fragment(run_every=every)
    def area() -> None:
        current = session()
        if current is not None and current.playing:
            try:
                current.tick(speed)
            except KamoeError as err:
                st.session_state[ERROR] = str(err)
                current.pause()
            if current.done or not current.playing:
                if current.done:
                    _finished(current)
                st.rerun(scope="app")  # buttons and settings change with the state
        total = current.total_epochs if current is not None else (config.train.epochs if config else 0)
        st.markdown(f"**{current.status_line() if current is not None else f'Epoch 0 / {total}'}**")
        if current is not None and current.done:
            st.caption(
                "This is the current run at its last epoch. Play or Step start a new model from epoch 0 with the "
                "settings on the left; the current run stays on the Runs page."
            )
        if current is None:
            st.caption(
                f"Play, Pause and Step train the model in front of you; the views below redraw every epoch. "
                f"Up to {MAX_SNAPSHOTS} epochs are kept as a timeline to scrub back through on the Gates, "
                "Splines and Experts pages."
            )
            return
        views(current)

    area()


def _points(s: TrainingSession) -> Any:
    cached = st.session_state.get(POINTS)
    if cached is None or cached[0] is not s.dataset:
        cached = (s.dataset, tc.data_points(s.dataset))
        st.session_state[POINTS] = cached
    return cached[1]


def _specs() -> LiveSpecs:
    specs = st.session_state.get(SPECS)
    if specs is None:
        specs = st.session_state[SPECS] = LiveSpecs()
    return specs


# Single-view charts take their column's width (a fixed width overflowed a narrow column and clipped the newest
# epochs); the maps and the faceted histogram keep the width their builder gives them.
STRETCHED = frozenset({"load", "loss", "story"})


def live_show(where: Any, name: str, *args: Any, **kwargs: Any) -> None:
    """A live chart: built once per shape, later redraws only refill its data (:mod:`kamoe_viz.charts.live`). The
    frames go as Arrow tables made in this thread (Streamlit's own conversion starts a thread pool per frame)."""
    import pyarrow as pa

    spec = _specs().spec(name, *args, **kwargs)
    spec["datasets"] = {
        key: pa.Table.from_pandas(frame, preserve_index=False, nthreads=1) if isinstance(frame, pd.DataFrame) else frame
        for key, frame in spec["datasets"].items()
    }
    if name in STRETCHED:
        spec = tl_ui.stretched(spec)
    where.vega_lite_chart(spec, width="stretch" if name in STRETCHED else "content")


def views(s: TrainingSession) -> None:
    """Region map beside the prediction map (2-D data), load bars, weight histograms, losses, NMI over epochs,
    gate weights over time (sequences)."""
    snap = s.current()
    timeline = s.timeline
    if s.dataset.is_2d and snap.region is not None:
        points = _points(s)
        left, right = st.columns(2)
        live_show(left.container(key="pg_region"), "region", timeline.region_frame(snap), points, size=MAP_SIZE)
        live_show(
            right.container(key="pg_prediction"), "prediction", timeline.prediction_frame(snap), points, size=MAP_SIZE
        )
    if s.dataset.is_sequence:
        frame = tc.sequence_weights_frame(snap.weights, timeline.probe_regimes, s.dataset.regime_names)
        from kamoe_viz.charts.gates import gates_over_time_chart

        tl_ui.show(st, gates_over_time_chart(frame, width=560))
    left, right = st.columns(2)
    live_show(left, "load", snap.metrics["load"])
    live_show(right, "histogram", snap.weights)
    left, right = st.columns(2)
    if s.epochs and s.last is not None:
        live_show(left, "loss", ct.history_frame(s.epochs), best_epoch=s.last.best_epoch, height=160)
    metrics = timeline.metrics_frame()
    if timeline.probe_regimes is not None and metrics["nmi"].notna().any():
        live_show(right, "story", metrics)
