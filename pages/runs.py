"""Runs page: the saved runs of the runs folder; open one in the explorer, download, delete, or upload a run file."""

from __future__ import annotations

import streamlit as st

from kamoe_viz import serving
from kamoe_viz.errors import KamoeError
from kamoe_viz.labels import EXPERT_LABELS, GATE_LABELS, METRIC_LABELS, metric_label
from kamoe_viz.runstore.store import display_filename
from kamoe_viz_app import entry, state
from kamoe_viz_app.safe import esc, unexpected

entry.ensure(__file__)  # drawn inside the app (see kamoe_viz_app/entry.py)

CONFIRM = "_confirm_delete"
PICK = "runs_pick"
VALUE_LABELS = {**GATE_LABELS, **EXPERT_LABELS}
# what tells runs apart first (they fit the page's width); "Every column" adds the rest
FIRST_COLUMNS = [
    "name",
    "dataset",
    "gate",
    "expert",
    "n_experts",
    "metric",
    "value",
    "epochs",
    "stopped_reason",
    "created",
]
TABLE_COLUMNS = [*FIRST_COLUMNS, "device", "run_id", "notes", "imported", "error"]
IMPORTED = "_imported_files"  # upload file ids already imported in this session (no double import on rerun)


def _label(row: dict) -> str:
    """'name · R² 0.912 · 2025-01-31 14:25' (or the problem of a damaged run) for the run picker."""

    def present(value) -> bool:
        return value is not None and value == value and value != ""

    parts = [str(row.get("name") or row.get("run_id"))]
    if present(row.get("error")):
        parts.append(f"damaged: {str(row['error'])[:60]}")
    elif present(row.get("metric")) and present(row.get("value")):
        parts.append(f"{metric_label(row['metric'])} {float(row['value']):.3f}")
    if present(row.get("created")):
        parts.append(str(row["created"])[:16].replace("T", " "))
    if present(row.get("imported")):
        parts.append(f"imported {str(row['imported'])[:16].replace('T', ' ')}")
    if present(row.get("run_id")):
        parts.append(f"id …{str(row['run_id'])[-6:]}")  # tells an imported copy from its original
    return " · ".join(parts)


def _text(value) -> str:
    return "" if value is None or value != value else str(value)


st.title("Saved runs")
folder = state.runs_dir()
st.caption(
    f"Every finished training is saved in the server's runs folder `{serving.runs_dir_label()}` (settings, weights as "
    "safetensors, metrics, loss history). Open one to explore it on the other pages, download it as a single "
    ".zip file, or upload a file someone shared. The folder is chosen when the server starts (--runs-dir or "
    "KAMOE_RUNS_DIR)."
)

try:
    store = state.run_store()
except KamoeError as err:
    st.error(esc(err), icon=":material/error:")
    st.stop()
except OSError as err:
    st.error(
        "The server's runs folder cannot be used; whoever runs the server can choose another one "
        "(--runs-dir or KAMOE_RUNS_DIR)."
    )
    serving.log.warning("runs folder %s cannot be used: %s", folder, err)
    st.stop()

with st.expander("Upload a run file", icon=":material/upload:"):
    limit_mb = int(st.get_option("server.maxUploadSize"))
    upload = st.file_uploader(
        f"Run file (.zip exported from KAMoE Explorer, up to {limit_mb} MB)", type=["zip"], key="run_upload"
    )
    if upload is not None:
        done = st.session_state.setdefault(IMPORTED, {})
        if upload.file_id not in done:
            try:
                known = set(store.run_ids())
                run_id = store.import_bytes(upload.getvalue(), upload.name)
                shown = esc(display_filename(upload.name))
                done[upload.file_id] = (
                    "ok",
                    f"{shown} is already saved here as run `{run_id}` (the same settings, "
                    "weights and results); it is selected below."
                    if run_id in known
                    else f"Imported {shown} as run `{run_id}`; it is selected below.",
                )
                st.session_state[PICK] = run_id  # select the new run in the picker
            except KamoeError as err:
                done[upload.file_id] = (
                    "error",
                    esc(f"{display_filename(upload.name)} was not imported; nothing was changed. {err}"),
                )
            except Exception as err:  # anything unforeseen in a hostile file: refuse it, keep the store as it is
                done[upload.file_id] = (
                    "error",
                    f"{esc(display_filename(upload.name))} was not imported; nothing "
                    f"was changed. {unexpected(err, 'Reading the run file')}",
                )
        kind, message = done[upload.file_id]
        (st.success if kind == "ok" else st.error)(message)

try:
    table = store.list_runs()
except KamoeError as err:
    st.error(esc(err), icon=":material/error:")
    st.stop()

if table is None or len(table) == 0:
    st.info("No saved runs yet. Train a model on the Train page; it is saved here when it finishes.", icon="ℹ️")
    st.page_link(state.TRAIN_PAGE, label="Go to Train", icon=":material/model_training:")
    st.stop()

current = state.current_run()
current_id = getattr(current, "run_id", None) if current is not None else None
st.markdown(f"**{len(table)} saved run{'s' if len(table) != 1 else ''}**")
shown = table[[c for c in TABLE_COLUMNS if c in table.columns]]
shown = shown.drop(columns=[c for c in ("notes", "imported", "error") if c in shown and shown[c].isna().all()])
shown = shown.assign(
    **{
        column: shown[column].map(lambda v, names=names: names.get(v, v))
        for column, names in (("gate", VALUE_LABELS), ("expert", VALUE_LABELS), ("metric", METRIC_LABELS))
        if column in shown
    }
)
if "created" in shown:  # 2026-12-03T19:05:29+00:00 -> 2026-12-03 19:05 (UTC)
    shown = shown.assign(created=shown["created"].map(lambda v: str(v)[:16].replace("T", " ") if v else v))
every = st.toggle(
    "Every column",
    value=False,
    key="runs_all_columns",
    help="Off: the columns that tell runs apart. On: also the device, run id, notes and import details; scroll "
    "the table sideways.",
)
st.dataframe(
    shown,
    hide_index=True,
    width="stretch",
    key="runs_table",
    column_order=None if every else [c for c in FIRST_COLUMNS if c in shown.columns],
    column_config={
        "value": st.column_config.NumberColumn("test score", format="%.4f"),
        "metric": "metric",
        "n_experts": "experts",
        "run_id": "run id",
        "stopped_reason": "stopped by",
        "created": "created (UTC)",
    },
)
ids = [str(r) for r in table["run_id"]]
labels = {rid: _label(row) for rid, row in zip(ids, table.to_dict("records"))}
if st.session_state.get(PICK) not in ids:  # first visit, or the picked run is gone: the current run, else the newest
    st.session_state[PICK] = current_id if current_id in ids else ids[0]
run_id = st.selectbox("Run", ids, format_func=lambda rid: labels.get(rid, rid), key=PICK)  # no index: state sets it
row = table[table["run_id"].astype(str) == run_id].iloc[0].to_dict()
damaged = _text(row.get("error"))
st.subheader(f"Run `{run_id}`" + ("  (open now)" if run_id == current_id else ""))
c1, c2, c3 = st.columns(3)
if damaged:
    st.error(f"This run cannot be opened: {esc(damaged.rstrip('.'))}. Delete it, or replace it with a good copy.")
if c1.button(
    "Open in the explorer", type="primary", icon=":material/open_in_browser:", width="stretch", disabled=bool(damaged)
):
    try:
        with st.spinner("Loading the run…"):
            run = store.load(run_id)
        state.set_current_run(run)
        st.toast(f"Run {run_id} is now the current run.")
        st.rerun()
    except KamoeError as err:
        st.error(f"Run `{run_id}` could not be opened; nothing was changed. {esc(err)}")

try:
    payload = store.export_bytes(run_id)
    c2.download_button(
        "Download as file",
        payload,
        file_name=store.export_filename(run_id),
        mime="application/zip",
        icon=":material/download:",
        width="stretch",
    )
except KamoeError as err:
    c2.error(f"Cannot export: {esc(err)}")

if st.session_state.get(CONFIRM) != run_id:
    if c3.button("Delete…", icon=":material/delete:", width="stretch"):
        st.session_state[CONFIRM] = run_id
        st.rerun()
else:
    st.warning(f"Delete run `{run_id}` for good? Download it first if you may want it again.")
    d1, d2, _ = st.columns([1, 1, 3])
    if d1.button("Yes, delete it", type="primary", icon=":material/delete_forever:"):
        try:
            store.delete(run_id)
            state.forget_run(run_id)
            st.session_state.pop(CONFIRM, None)
            st.toast(f"Deleted run {run_id}.")
            st.rerun()
        except KamoeError as err:
            st.error(esc(err))
    if d2.button("Cancel"):
        st.session_state.pop(CONFIRM, None)
        st.rerun()

with st.expander("Name and notes", icon=":material/edit_note:"), st.form(f"rename_{run_id}", border=False):
    name = st.text_input("Name", value=_text(row.get("name")), max_chars=120)
    notes = st.text_area(
        "Notes",
        value=_text(row.get("notes")),
        max_chars=10_000,
        help="What you tried and what you saw; kept with the run and in its exported file.",
    )
    if st.form_submit_button("Save name and notes"):
        try:
            store.rename(run_id, name=name, notes=notes)
            st.toast("Saved.")
            st.rerun()
        except KamoeError as err:
            st.error(esc(err))
