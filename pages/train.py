"""Train page: pick data, build a mixture of experts, watch it learn, compare it with a plain baseline."""

from __future__ import annotations

import streamlit as st

from kamoe_viz.config import RunConfig
from kamoe_viz.errors import KamoeError
from kamoe_viz_app import config_state as cfg
from kamoe_viz_app import data_section as data_ui
from kamoe_viz_app import entry, results, state
from kamoe_viz_app import playground as pg
from kamoe_viz_app import train_live as live
from kamoe_viz_app.presets import available_presets
from kamoe_viz_app.safe import esc, unexpected
from kamoe_viz_app.train_settings import in_page_words, model_settings, training_settings

entry.ensure(__file__)  # drawn inside the app (see kamoe_viz_app/entry.py)


@st.cache_data(show_spinner=False)
def _devices() -> list[str]:
    from kamoe_viz.training import available_devices

    return list(available_devices())


def _apply_preset(preset_key: str) -> None:
    preset = next(p for p in available_presets([i.name for i in data_ui.dataset_infos()]) if p.name == preset_key)
    cfg.set_master(preset.config(), reseed=True)
    st.session_state[cfg.widget_key("source")] = data_ui.SOURCE_BUILTIN


def _preflight(config: RunConfig, dataset) -> tuple[str | None, str | None]:
    """Size within the server's budget and impossible combinations (:func:`kamoe_viz.budget.check_buildable`), once
    per setting; (parameter text, error)."""
    key = (config.to_json(), dataset.n_features, dataset.n_outputs, dataset.seq_len)
    cached = st.session_state.get("_preflight")
    if cached and cached[0] == key:
        return cached[1]
    from kamoe_viz.budget import check_buildable

    try:
        cost = check_buildable(config, dataset)
        outcome = (f"{cost.params:,} parameters, of which the gate has {cost.gate_params:,}", None)
    except KamoeError as err:
        outcome = (None, str(err))
    except Exception as err:
        outcome = (None, unexpected(err, "Checking these settings"))
    st.session_state["_preflight"] = (key, outcome)
    return outcome


present = cfg.presenting()
st.title("Train a mixture of experts")
if not present:
    st.caption(
        "Pick data, choose a gate (linear, GRN or the paper's GRKAN) and experts, then press Train, or Play "
        "and Step to watch the gate learn to route. The URL always holds the settings: copy it to share this "
        "exact setup (add `present=1` for a classroom view with only the data, the controls and the views)."
    )
base = cfg.master()  # on the session's first visit: the link's settings
for warning in cfg.pop_link_warnings():
    st.warning(warning, icon=":material/link_off:")  # escaped where it is made
busy = live.busy()
lock = busy or pg.locked() or False  # True: a training runs; a reason: the Playground holds a model

presets = [] if present else available_presets([i.name for i in data_ui.dataset_infos()])
if presets:
    with st.expander(
        "Presets: known-good starting points",
        expanded=st.session_state.get("_first_visit", True),
        icon=":material/auto_awesome:",
    ):
        per_row = 5
        for start in range(0, len(presets), per_row):
            cols = st.columns(per_row)
            for col, preset in zip(cols, presets[start : start + per_row]):
                col.button(
                    preset.title,
                    key=f"preset_{preset.name}",
                    on_click=_apply_preset,
                    args=(preset.name,),
                    disabled=bool(lock),
                    width="stretch",
                    help=lock if isinstance(lock, str) else None,
                )
                col.caption(preset.caption)
st.session_state["_first_visit"] = False

left, right = st.columns([1, 1.7], gap="large")
with left:
    st.subheader("Data")
    link_upload = base.data.name == data_ui.UPLOAD_NAME
    source = (
        st.segmented_control(
            "Source",
            [data_ui.SOURCE_BUILTIN, data_ui.SOURCE_UPLOAD],
            disabled=bool(lock),
            label_visibility="collapsed",
            key=cfg.seed("source", data_ui.SOURCE_UPLOAD if link_upload else data_ui.SOURCE_BUILTIN),
        )
        or data_ui.SOURCE_BUILTIN
    )
    if source == data_ui.SOURCE_UPLOAD:
        if link_upload and base.data.target and st.session_state.get(data_ui.UPLOAD_WIDGET) is None:
            st.info(
                f"These settings were made on an uploaded CSV (target {esc(base.data.target)}). Upload the same "
                "file to train on it."
            )
        data, dataset, data_error = data_ui.upload_section(base, lock)
    else:
        data, dataset, data_error = data_ui.builtin_section(base, lock)
    if present:  # the link's model and training settings, without their widgets
        model_values, errors, train_values = {}, [], {}
    else:
        st.subheader("Model")
        model_values, errors = model_settings(base, bool(dataset is not None and dataset.is_sequence), lock)
        st.subheader("Training")
        train_values = training_settings(base, _devices(), lock)

raw = base.to_dict()
raw["data"] = data
raw["model"].update(model_values)
raw["train"].update(train_values)
config: RunConfig | None = None
try:
    config = RunConfig.from_dict(raw)
except KamoeError:
    errors[:0] = RunConfig.problems(raw)  # all of them, not only the first
if config is not None and not busy:
    cfg.set_master(config)
    cfg.sync_link(config)

with right:
    params_text = None
    if config is not None and dataset is not None and not errors:
        params_text, build_error = _preflight(config, dataset)
        if build_error:
            errors.append(build_error)
    if dataset is None and data_error:
        (st.info if data_error.startswith("Upload a CSV") else st.error)(esc(data_error))
    for message in errors:
        st.error(in_page_words(message), icon=":material/error:")

    ready = config is not None and dataset is not None and not errors
    if present:
        pg.controls(config, dataset, ready, busy)
        st.stop()
    c1, c2, c3 = st.columns([1, 1.5, 1], vertical_alignment="center")
    clicked = c1.button(
        "Train",
        type="primary",
        icon=":material/play_arrow:",
        disabled=busy or not ready or pg.playing(),
        width="stretch",
        help="Train a new model to its last epoch in one go (it replaces the model in the playground below)."
        if ready
        else "Fix the messages above first.",
    )
    with_baseline = c2.checkbox(
        "Also train a plain baseline",
        value=True,
        key="with_baseline",
        disabled=busy,
        help="After the mixture, train the standard single-expert model with the same "
        "settings and show both test scores side by side.",
    )
    with c3:
        if config is not None:
            results.share_link(config)
    if params_text:
        st.caption(f"Model: {params_text}.")
    with st.container(border=True):
        st.markdown("**Watch it learn** · Play, Pause, Step through the epochs; the views redraw as it trains")
        pg.controls(config, dataset, ready, busy)
    if clicked and ready:
        csv = st.session_state.get(data_ui.UPLOAD_BYTES) if source == data_ui.SOURCE_UPLOAD else None
        message = live.start(config, dataset, with_baseline, csv=csv)
        if message:
            st.error(esc(message), icon=":material/error:")
        else:
            st.rerun()
    if not busy:
        live.unwatched_jobs_notice()
    live.live_panel()
    results.last_job_messages(live.job())
    # results show as soon as the mixture is done, while its baseline may still be training
    job = live.job()
    has_results = state.current_run() is not None and (not busy or job.run is state.current_run())
    if has_results and state.playground_in_progress():  # one model in front: the one being stepped through
        with st.expander("Results of the current run (the playground's model replaces it when its training ends)"):
            results.current_run_results()
    elif has_results:
        results.current_run_results()
    if dataset is not None:
        if busy or has_results:
            with st.expander(f"Dataset: {esc(dataset.name)}", icon=":material/table_view:"):
                data_ui.dataset_card(dataset)
        else:
            data_ui.dataset_card(dataset)
