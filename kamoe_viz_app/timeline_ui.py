"""The training timeline on the Gates, Splines and Experts pages: a `Timeline epoch` slider that redraws the page's
timeline charts at that epoch, Animate (steps the slider through the epochs), the story charts and the GIF / PNG
export. Everything drawn comes from the run's :class:`kamoe_viz.training.timeline.Timeline`."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import streamlit as st

from kamoe_viz.charts import animation as an
from kamoe_viz.charts import timeline as tc
from kamoe_viz.routing_metrics import ROUTING_METRIC_LABELS
from kamoe_viz.training.timeline import MAX_SNAPSHOTS, SETTLE_DEFINITION, Snapshot
from kamoe_viz_app import state

ANIMATE_SECONDS = 0.6  # one timeline epoch per this many seconds while animating
NO_TIMELINE = (
    "This run has no training timeline: it was saved before timelines existed, or trained on the "
    "command line without `--snapshot-every`. Train it again on the Train page to scrub through it."
)


def stretched(spec: dict[str, Any]) -> dict[str, Any]:
    """A single-view spec that fills its column's width, axes and legend inside it."""
    return {**spec, "width": "container", "autosize": {"type": "fit-x", "contains": "padding"}}


def show(where: Any, chart: Any, stretch: bool = False) -> None:
    """A chart at its designed size (``stretch``: as wide as its column, axes and legend included), its data sent
    as frames (:func:`kamoe_viz.charts.export.frames_spec`: no JSON records, no schema check;
    tests/test_timeline_charts.py validates every builder)."""
    from kamoe_viz.charts.export import frames_spec

    spec = stretched(frames_spec(chart)) if stretch else frames_spec(chart)
    where.vega_lite_chart(spec, width="stretch" if stretch else "content")


def _keys(page: str) -> tuple[str, str]:
    return f"{page}_timeline_epoch", f"{page}_timeline_animating"


def _toggle(flag: str) -> None:
    st.session_state[flag] = not st.session_state.get(flag, False)


def timeline_section(run: Any, page: str, draw: Callable[[Any, Snapshot], None], story: bool = False) -> None:
    """Slider, Animate and ``draw(timeline, snapshot)`` at the chosen epoch; with ``story`` the charts of the whole
    run and the export too."""
    timeline = getattr(run, "timeline", None)
    if timeline is None or not timeline.snapshots:
        st.subheader("Training timeline")
        st.caption(NO_TIMELINE)
        return
    with st.container(border=True, key=f"{page}_timeline_box"):
        _timeline_box(run, timeline, page, draw, story)
    st.info(final_note(run), icon=":material/flag:")


def final_note(run: Any) -> str:
    """What the page's other sections show: the saved model (its best epoch's weights), not the timeline epoch."""
    best, ran = run.result.best_epoch, run.result.epochs_run
    which = (
        f"the weights of epoch {best} of {ran} (lowest validation loss)" if best else f"its weights after {ran} epochs"
    )
    return (
        f"**Below this box: the trained model as saved**, {which}, on all its rows. Only the charts inside the "
        "box follow `Timeline epoch`."
    )


def snapshot_line(snap: Snapshot, best_epoch: int | None) -> str:
    """``Epoch N · train loss … · val loss … · NMI vs regimes … · routing entropy …`` of one snapshot."""
    parts = [
        f"**Epoch {snap.epoch}**"
        + (" (untrained)" if snap.epoch == 0 else " (the saved model's epoch)" if snap.epoch == best_epoch else "")
    ]
    parts += [
        f"{label} {value:.4g}"
        for label, value in (("train loss", snap.train_loss), ("val loss", snap.val_loss))
        if value is not None
    ]
    for key in ("nmi", "routing_entropy"):
        value = snap.metrics.get(key)
        if isinstance(value, float) and math.isfinite(value):
            parts.append(f"{ROUTING_METRIC_LABELS[key]} {value:.2f}")
    return " · ".join(parts)


def _timeline_box(run: Any, timeline: Any, page: str, draw: Callable[[Any, Snapshot], None], story: bool) -> None:
    st.subheader("Training timeline")
    epochs = timeline.epochs
    key, flag = _keys(f"{page}_{state.run_key(run)}")
    if st.session_state.get(key) not in epochs:
        st.session_state[key] = epochs[-1]
    animating = bool(st.session_state.get(flag))
    st.caption(
        f"{len(epochs)} snapshots of how the gate routed while it trained (epoch 0 = untrained; at most "
        f"{MAX_SNAPSHOTS} per run: every epoch for short runs, log-spaced for long ones), on a fixed probe "
        "of validation rows. Move the slider to redraw the charts in this box at that epoch."
    )
    st.button(
        "Stop" if animating else "Animate",
        key=f"{flag}_button",
        on_click=_toggle,
        args=(flag,),
        icon=":material/stop:" if animating else ":material/play_arrow:",
        help="Step the slider through the epochs, one every "
        f"{ANIMATE_SECONDS:g} s, and start again from epoch 0 at the end.",
    )

    @st.fragment(run_every=ANIMATE_SECONDS if animating else None)
    def scrub() -> None:
        if st.session_state.get(flag):  # advance before the slider is drawn
            at = epochs.index(st.session_state[key]) if st.session_state[key] in epochs else -1
            st.session_state[key] = epochs[(at + 1) % len(epochs)]
        epoch = st.select_slider(
            "Timeline epoch", epochs, key=key, help="The epoch whose snapshot the charts in this box show."
        )
        snap = timeline.at(epoch)
        st.markdown(snapshot_line(snap, run.result.best_epoch))
        draw(timeline, snap)
        if story:
            story_charts(timeline, snap.epoch)

    scrub()
    if story:
        export(run, page)


def story_charts(timeline: Any, current: int) -> None:
    settle = timeline.settle_epoch()
    st.caption(SETTLE_DEFINITION + (f" Here: epoch {settle}." if settle is not None else ""))
    left, right = st.columns(2)
    recorded = timeline.epochs
    epochs = (min(recorded), max(recorded)) if recorded else None  # both charts on the same epoch axis
    show(left, tc.load_area_chart(timeline.load_frame(), settle, current, epochs=epochs), stretch=True)
    show(right, tc.story_metrics_chart(timeline.metrics_frame(), settle, current, epochs=epochs), stretch=True)


def export(run: Any, page: str) -> None:
    """Prepare, then download, the timeline as an animated GIF and its frames as PNGs in a zip."""
    timeline = run.timeline
    name = f"timeline_{state.run_key(run)}"
    ready = st.session_state.get(f"_{page}_export")
    cols = st.columns([1.4, 1, 1], vertical_alignment="center")
    if cols[0].button(
        "Prepare GIF and PNG frames",
        icon=":material/movie:",
        key=f"{page}_export_prepare",
        help=f"Renders up to {an.MAX_FRAMES} frames (region map and load per epoch) for slides; a few seconds.",
    ):
        with st.spinner("Rendering frames…"):
            points = tc.data_points(run.dataset) if run.dataset.is_2d else None
            frames = an.render_frames(timeline, lambda snap: tc.frame_chart(timeline, snap, points))
            ready = (state.run_key(run), an.gif_bytes(frames), an.png_zip(frames))
            st.session_state[f"_{page}_export"] = ready
    if ready and ready[0] == state.run_key(run):
        cols[1].download_button(
            "GIF", ready[1], f"{name}.gif", "image/gif", icon=":material/download:", key=f"{page}_export_gif"
        )
        cols[2].download_button(
            "PNG frames (zip)",
            ready[2],
            f"{name}_frames.zip",
            "application/zip",
            icon=":material/download:",
            key=f"{page}_export_zip",
        )


# ----- what each page draws at the chosen epoch --------------------------------------------------------------------
def draw_gates(timeline: Any, snap: Snapshot, run: Any) -> None:
    region = timeline.region_frame(snap)
    left, right = st.columns(2)
    if region is not None:
        points = state.run_cached(run, "timeline_points", lambda: tc.data_points(run.dataset))
        show(left, tc.region_map_chart(region, points, title=f"Winning expert at epoch {snap.epoch}"))
        show(right, tc.load_bars_chart(snap.metrics["load"], title=f"Load per expert, epoch {snap.epoch}"))
    else:
        show(left, tc.load_bars_chart(snap.metrics["load"], title=f"Load per expert, epoch {snap.epoch}"))
        if run.dataset.is_sequence:
            from kamoe_viz.charts.gates import gates_over_time_chart

            frame = tc.sequence_weights_frame(snap.weights, timeline.probe_regimes, run.dataset.regime_names)
            show(st, gates_over_time_chart(frame, width=560))
    show(right, tc.histogram_chart(snap.weights))


TIMELINE_EDGES = 12  # panels in the timeline's spline view (the page's ranked view has all)


def draw_splines(timeline: Any, snap: Snapshot) -> None:
    frame = timeline.spline_frame(snap, top=TIMELINE_EDGES)
    if not len(frame):
        st.caption("The timeline keeps the GRKAN gate's spline curves; this run's gate has none.")
        return
    st.caption(
        f"The {frame['edge'].nunique()} gate edges whose curves span the widest range at the last snapshot, each "
        "drawn over its spline grid (where the spline part acts; outside it only the base function does). The "
        "ranked view below draws every edge over the range of the data it sees, and says how much lies outside."
    )
    show(st, tc.spline_curves_chart(frame, title=f"Gate splines φ(x) at epoch {snap.epoch}"))


def draw_experts(timeline: Any, snap: Snapshot) -> None:
    left, right = st.columns(2)
    show(left, tc.load_bars_chart(snap.metrics["load"], title=f"Load per expert, epoch {snap.epoch}"))
    shares = tc.regime_share_frame(snap.weights, timeline.probe_regimes)
    if len(shares):
        show(right, tc.regime_share_chart(shares, title=f"Which expert takes which regime, epoch {snap.epoch}"))
    else:
        right.caption("This dataset has no known regimes to compare the experts with.")
