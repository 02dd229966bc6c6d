"""The Train page's lower half: the shareable link, messages of the last training, and the current run's results."""

from __future__ import annotations

from typing import Any

import pandas as pd
import streamlit as st

from kamoe_viz.charts import training as ct
from kamoe_viz.config import RunConfig
from kamoe_viz.labels import METRIC_LABELS, ROUTING_METRIC_LABELS
from kamoe_viz.presets import preset_of, run_epoch_cap_notice
from kamoe_viz_app import config_state as cfg
from kamoe_viz_app import state
from kamoe_viz_app import train_live as live
from kamoe_viz_app.safe import esc

HIGHER_IS_BETTER = {"r2", "accuracy"}
ROUTING_SHOWN = ("nmi", "min_load", "max_load", "routing_entropy")  # the routing metrics next to the scores


def share_link(config: RunConfig) -> None:
    """A copyable link (the code block has a copy button) that restores these settings."""
    query = cfg.link_query(config)
    base_url = None
    try:
        base_url = st.context.url
    except Exception:  # no browser context (tests, scripts)
        base_url = None
    with st.popover("Copy link", icon=":material/link:"):
        st.caption(
            "Opening this link restores every setting on this page (the data itself is not in the link "
            "for uploaded CSVs)."
        )
        if base_url:
            root = base_url.rstrip("/") + "/"
            st.code(f"{root}?{query}" if query else root, language=None, wrap_lines=True)
        else:
            st.code(
                f"?{query}" if query else "(default settings: the app's plain address)", language=None, wrap_lines=True
            )
            st.caption("Append this to the app's address.")


def last_job_messages(job: Any) -> None:
    """What went wrong in the last training (library message; details for a bug report) and saving notes."""
    if job is None or job.running:
        return
    if job.error:
        st.error(job.error, icon=":material/error:")
        if job.details:
            with st.expander("Details for a bug report"):
                st.code(job.details, language=None)
    if job.stopped_idle:
        st.info("Training stopped by itself because nobody watched it for a while; the model so far was kept.")
    for note in job.notes:
        st.warning(note, icon=":material/warning:")


def _metrics_table(metrics: dict[str, Any], baseline: dict[str, Any] | None) -> pd.DataFrame:
    rows = []
    for key, label in METRIC_LABELS.items():
        value = metrics.get(key)
        if not isinstance(value, (int, float)):
            continue
        row = {"metric (test set)": label, "mixture": value}
        if baseline is not None and isinstance(baseline.get(key), (int, float)):
            row["plain baseline"] = baseline[key]
            better = value > baseline[key] if key in HIGHER_IS_BETTER else value < baseline[key]
            row["mixture better?"] = "yes" if better else "no"
        rows.append(row)
    return pd.DataFrame(rows)


def _routing_table(report: dict[str, Any]) -> pd.DataFrame:
    rows = [
        {"routing (test set)": ROUTING_METRIC_LABELS[key], "value": float(report[key])}
        for key in ROUTING_SHOWN
        if isinstance(report.get(key), (int, float))
    ]
    return pd.DataFrame(rows)


def _claims_text(run: Any, values: dict[str, Any]) -> str | None:
    """What the run's preset promises over seeds, each claim beside this run's value (one seed)."""
    preset = preset_of(run.config)
    if preset is None or not preset.claims:
        return None
    parts = []
    for claim in preset.claims:
        value = values.get(claim.metric)
        mine = f" (this run: {value:.3g})" if isinstance(value, (int, float)) else ""
        parts.append(f"{claim.describe()}{mine}")
    return f"The {preset.title} preset is tested to give: " + "; ".join(parts) + "."


def _routing_report(run: Any) -> dict[str, Any]:
    from kamoe_viz.training.evaluation import routing_report

    return routing_report(run)


def _val_gate_weights(run: Any):
    from kamoe_viz.training import predict

    X = run.dataset.X_val[:512]
    return predict(run.model, X)["gate_weights"]


def current_run_results() -> None:
    """Metrics next to the baseline, loss history, gate weights and load of the current run."""
    run = state.current_run()
    if run is None:
        return
    result = run.result
    info = state.describe_run(run)
    st.subheader("Results")
    st.caption(
        f"{esc(info['dataset'])} · gate {info['gate']} · {info['experts']} · {info['device']} · "
        f"epochs {info['epochs']} · {result.seconds:.1f} s"
        + (f" · saved as `{run.run_id}`" if getattr(run, "run_id", None) else "")
    )
    if getattr(result, "message", None):  # a divergence (TrainingDivergedError's message) is an error
        show = st.error if result.stopped_reason == "diverged" else st.warning
        show(
            esc(result.message),
            icon=":material/error:" if result.stopped_reason == "diverged" else ":material/warning:",
        )
    notice = run_epoch_cap_notice(result, run.config)
    if notice:
        st.info(notice, icon=":material/timer:")
    baseline = live.baseline_metrics(run)
    report = state.run_cached(run, "routing_report", lambda: _routing_report(run))
    st.dataframe(_metrics_table(result.metrics, baseline), hide_index=True, width="content")
    if report:
        st.dataframe(
            _routing_table(report),
            hide_index=True,
            width="content",
            column_config={"value": st.column_config.NumberColumn(format="%.3f")},
        )
    claims = _claims_text(run, {**result.metrics, **report})
    if claims:
        st.caption(claims)
    if live.busy():
        st.caption("The plain baseline is training; its scores appear here when it is done.")
    elif (
        baseline is None
        and run.config.model.kind != "standard"
        and st.button(
            "Train the plain baseline now",
            icon=":material/compare_arrows:",
            help="The standard single-expert model with the same settings, for comparison.",
        )
    ):
        message = live.start_baseline(run)
        if message:
            st.error(esc(message))
        else:
            st.rerun()
    left, right = st.columns(2)
    history = ct.history_frame(result.history)
    left.altair_chart(
        ct.loss_chart(history, best_epoch=result.best_epoch), width="stretch", height=ct.chart_height("loss")
    )
    if run.config.model.kind != "standard":
        weights = state.run_cached(run, "val_gate_weights", lambda: _val_gate_weights(run))
        right.altair_chart(ct.gate_distribution_chart(ct.gate_weight_frame(weights)), width="stretch")
        loads = state.run_cached(run, live.LOAD_HISTORY, lambda: pd.DataFrame(columns=["epoch", "expert", "load"]))
        if len(loads):
            left.altair_chart(ct.load_chart(loads, height=160), width="stretch", height=ct.chart_height("load"))
        right.caption(
            ct.LOAD_DEFINITIONS[run.config.model.gate_activation]
            + (" " + ct.TOP_K_NOTE if run.config.model.top_k else "")
        )
    st.markdown("**Explore this model:**")
    cols = st.columns(3)
    for i, (page, label, icon) in enumerate(
        [
            ("pages/splines.py", "Splines", ":material/show_chart:"),
            ("pages/gates.py", "Gates", ":material/alt_route:"),
            ("pages/experts.py", "Experts", ":material/groups:"),
            ("pages/attribution.py", "Attribution", ":material/insights:"),
            ("pages/compare.py", "Compare gates", ":material/compare_arrows:"),
            ("pages/runs.py", "Saved runs", ":material/folder_open:"),
        ]
    ):
        cols[i % 3].page_link(page, label=label, icon=icon)
    if st.button(
        "Load this run's settings into the form", icon=":material/settings_backup_restore:", disabled=live.busy()
    ):
        cfg.set_master(run.config, reseed=True)
        st.rerun()
