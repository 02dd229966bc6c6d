"""Per-session state shared by the pages: the current run, recent runs, the run store, and the sidebar.

Trained models live only in ``st.session_state`` (one browser session = its own models); nothing trained is ever
put in a global cache. Memory is bounded: the current run plus at most ``MAX_RECENT - 1`` earlier ones are kept,
older ones are released (they stay on disk in the run store).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import streamlit as st

from kamoe_viz import serving
from kamoe_viz.labels import expert_label, gate_label
from kamoe_viz.training.live import background_jobs
from kamoe_viz_app.safe import esc

CURRENT = "current_run"
RECENT = "recent_runs"
RUN_CACHE = "_run_cache"
MAX_RECENT = 3
TRAIN_PAGE = "pages/train.py"
TRAIN_JOB = "_train_job"  # session key of the Train page's LiveJob (kamoe_viz_app/train_live.py)
PLAYGROUND_SESSION = "_playground"  # session key of the playground's TrainingSession (kamoe_viz_app/playground.py)
PLAYGROUND_NOTE = (
    "A model is being trained step by step in the playground on the Train page; it becomes the "
    "current run, and shows here, when its training ends."
)


def playground_in_progress() -> bool:
    """Whether the playground holds a model that has started training and not finished."""
    s = st.session_state.get(PLAYGROUND_SESSION)
    return s is not None and s.in_progress


# ----- current run -----------------------------------------------------------------------------------------------
def current_run() -> Any | None:
    """The session's current :class:`kamoe_viz.training.TrainedRun`, or None."""
    return st.session_state.get(CURRENT)


def run_key(run: Any) -> str:
    """A key that identifies a run in this session: its run id once saved, else a session-local token."""
    run_id = getattr(run, "run_id", None)
    if run_id:
        return str(run_id)
    token = getattr(run, "_session_token", None)
    if token is None:
        token = f"unsaved-{id(run):x}"
        with contextlib.suppress(AttributeError):  # a run type that refuses new attributes stays unsaved-id keyed
            run._session_token = token
    return token


def set_current_run(run: Any | None) -> None:
    """Make ``run`` the current run; keep it and at most MAX_RECENT - 1 earlier runs, release the rest."""
    st.session_state[CURRENT] = run
    if run is None:
        return
    key = run_key(run)
    recent = [r for r in st.session_state.get(RECENT, []) if run_key(r) != key]
    recent.insert(0, run)
    dropped = recent[MAX_RECENT:]
    st.session_state[RECENT] = recent[:MAX_RECENT]
    cache = st.session_state.get(RUN_CACHE, {})
    for old in dropped:  # interpretation results of released runs go with them
        cache.pop(run_key(old), None)


def recent_runs() -> list[Any]:
    return list(st.session_state.get(RECENT, []))


def forget_run(run_id: str) -> None:
    """Drop a run (e.g. deleted from the store) from this session's memory."""
    st.session_state[RECENT] = [r for r in recent_runs() if run_key(r) != run_id]
    current = current_run()
    if current is not None and run_key(current) == run_id:
        st.session_state[CURRENT] = None
    st.session_state.get(RUN_CACHE, {}).pop(run_id, None)


def require_run() -> Any | None:
    """The current run, or None after showing an info box with a link to the Train page."""
    run = current_run()
    training = st.session_state.get(TRAIN_JOB)
    if run is None and training is not None and getattr(training, "running", False):
        st.info(
            "A model is training on the Train page right now. It appears here as soon as it has finished "
            "(click this page again then, or watch it train on the Train page).",
            icon="⏳",
        )
        st.page_link(TRAIN_PAGE, label="Watch it train", icon=":material/model_training:")
        return None
    if run is None and playground_in_progress():
        st.info(PLAYGROUND_NOTE, icon="⏳")
        st.page_link(TRAIN_PAGE, label="Back to the playground", icon=":material/model_training:")
        return None
    if run is None and background_jobs():  # e.g. started in another tab, or before this page was reloaded
        st.info(
            "No model in this browser session yet, but a model is training in the background (started from "
            "another tab, or before this page was reloaded). Open the Train page and click **Watch it here** "
            "to follow it; this page shows it once it has finished there.",
            icon="⏳",
        )
        st.page_link(TRAIN_PAGE, label="Go to Train", icon=":material/model_training:")
        return None
    if run is None:
        st.info(
            "No model trained yet. Train one on the Train page (a click trains the default dataset in a few "
            "seconds), or reload a saved run on the Runs page; this page then shows it.",
            icon="ℹ️",
        )
        cols = st.columns([1, 1, 4])
        cols[0].page_link(TRAIN_PAGE, label="Go to Train", icon=":material/model_training:")
        cols[1].page_link("pages/runs.py", label="Saved runs", icon=":material/folder_open:")
    return run


def run_cached(run: Any, name: str, compute: Callable[[], Any]) -> Any:
    """Compute ``compute()`` once per (run, name) in this session; later reruns reuse the result."""
    cache: dict[str, dict[str, Any]] = st.session_state.setdefault(RUN_CACHE, {})
    per_run = cache.setdefault(run_key(run), {})
    if name not in per_run:
        per_run[name] = compute()
    return per_run[name]


# ----- run store -------------------------------------------------------------------------------------------------
def runs_dir() -> Path:
    """The server's runs folder, chosen by whoever started it (--runs-dir, env KAMOE_RUNS_DIR, else ./runs); a
    visitor cannot change it."""
    return serving.runs_dir()


def run_store():
    """A RunStore on this session's runs folder (cheap to create; holds no models)."""
    from kamoe_viz.runstore import RunStore

    return RunStore(runs_dir())


# ----- sidebar ---------------------------------------------------------------------------------------------------
def _metric_text(metrics: dict[str, Any]) -> list[tuple[str, str]]:
    shown = []
    for key, label, fmt in (
        ("r2", "test R²", "{:.3f}"),
        ("rmse", "test RMSE", "{:.4g}"),
        ("accuracy", "test accuracy", "{:.1%}"),
        ("log_loss", "test log loss", "{:.3f}"),
    ):
        value = metrics.get(key)
        if isinstance(value, (int, float)):
            shown.append((label, fmt.format(value)))
    return shown


def describe_run(run: Any) -> dict[str, str]:
    """Short labels for a run: dataset, gate, experts, device, epochs."""
    config = run.config
    model = config.model
    dataset = getattr(run, "dataset", None)
    data_label = getattr(dataset, "name", None) or config.data.name
    if model.kind == "standard":
        gate = "none (single expert)"
        experts = f"1 × {expert_label(model.expert)} {list(model.expert_hidden)}"
    else:
        gate = f"{gate_label(model.gate)} · {model.gate_activation}"
        if model.routing != "dense":
            gate += f" · {model.routing}" + (f" (k={model.top_k})" if model.top_k else "")
        if model.shared_experts:
            gate += f" · {model.shared_experts} shared"
        experts = f"{model.n_experts} × {expert_label(model.expert)} {list(model.expert_hidden)}"
    result = run.result
    return {
        "dataset": str(data_label),
        "gate": gate,
        "experts": experts,
        "device": str(getattr(result, "device", "") or config.train.device),
        "epochs": f"{result.epochs_run} ({result.stopped_reason.replace('_', ' ')})",
    }


NO_PICK = "—"
RECENT_PICK = "_recent_pick"


def _recent_label(run: Any) -> str:
    """Dataset, gate, test score and run id: two runs of the same settings still read differently."""
    info = describe_run(run)
    parts = [
        info["dataset"],
        info["gate"],
        *(f"{label} {value}" for label, value in _metric_text(run.result.metrics)[:1]),
    ]
    run_id = getattr(run, "run_id", None)
    parts.append(str(run_id) if run_id else "not saved")
    return " · ".join(parts)


def _switch_to_picked(others: list[Any]) -> None:
    """The selectbox's change callback: make the picked run current and put the box back on its placeholder. In a
    callback (before the script reruns) resetting the widget's value is allowed and reaches the browser; resetting
    it afterwards left the browser's box on the picked run, and every later click switched runs again."""
    choice = st.session_state.get(RECENT_PICK, NO_PICK)
    picked = next((r for r in others if run_key(r) == choice), None)
    if picked is not None:
        set_current_run(picked)
    st.session_state[RECENT_PICK] = NO_PICK


def render_sidebar() -> None:
    """Always-visible summary of the current run, recent runs of this session, and the runs folder."""
    with st.sidebar:
        st.markdown("### Current run")
        run = current_run()
        if run is None:
            st.caption(
                PLAYGROUND_NOTE
                if playground_in_progress()
                else "No model yet: train one on the Train page or reload a saved run."
            )
        else:
            if playground_in_progress():
                st.caption(PLAYGROUND_NOTE)
            info = describe_run(run)
            lines = [
                f"**Dataset** {esc(info['dataset'])}",
                f"**Gate** {info['gate']}",
                f"**Experts** {info['experts']}",
                f"**Device** {info['device']}",
                f"**Epochs** {info['epochs']}",
            ]
            st.markdown("  \n".join(lines))
            metrics = _metric_text(run.result.metrics)
            if metrics:
                cols = st.columns(len(metrics[:2]))
                for col, (label, value) in zip(cols, metrics[:2]):
                    col.metric(label, value)
            st.caption(f"Run id: `{run.run_id}`" if getattr(run, "run_id", None) else "Not saved")
        others = [r for r in recent_runs() if run is None or run_key(r) != run_key(run)]
        if others:
            labels = {run_key(r): _recent_label(r) for r in others}
            st.selectbox(
                "Switch to a recent run",
                [NO_PICK] + list(labels),
                format_func=lambda k: labels.get(k, NO_PICK),
                key=RECENT_PICK,
                on_change=_switch_to_picked,
                args=(others,),
            )
        st.caption(
            f"Finished runs are saved in the server's runs folder `{serving.runs_dir_label()}` "
            "(chosen when the server starts: --runs-dir or KAMOE_RUNS_DIR)."
        )
