"""Compare page: linear, GRN and GRKAN gates (and the plain model) side by side over several seeds.

Widgets and layout only: kamoe_viz.compare trains and tests, kamoe_viz.charts.compare draws. The latest comparison
of this browser session is kept in ``st.session_state`` (per user), so visiting other pages does not lose it.
"""

from __future__ import annotations

import time
from typing import Any

import streamlit as st

from kamoe_viz.charts import compare as cc
from kamoe_viz.compare import cpu_count
from kamoe_viz.compare import run as run_comparison
from kamoe_viz.compare.engines import RAY_ADDRESS_ENV, server_ray_address
from kamoe_viz.compare.form import comparison_config, recipe_changes
from kamoe_viz.config import EXPERT_TYPES, GATE_FAMILIES, MAX_EPOCHS, RunConfig
from kamoe_viz.errors import KamoeError
from kamoe_viz.labels import EXPERT_LABELS, GATE_LABELS, ROUTING_METRIC_LABELS, in_variant_labels, variant_label
from kamoe_viz.routing_metrics import ROUTING_METRIC_DEFINITIONS
from kamoe_viz.routing_specs import ROUTERS
from kamoe_viz_app import entry
from kamoe_viz_app.config_state import master
from kamoe_viz_app.data_section import dataset_infos
from kamoe_viz_app.interpret_ui import readable_columns
from kamoe_viz_app.routing_settings import ROUTER_HELP
from kamoe_viz_app.safe import esc, unexpected
from kamoe_viz_app.train_settings import FIELD_LABELS

entry.ensure(__file__)  # drawn inside the app (see kamoe_viz_app/entry.py)

RESULT = "compare_result"
K = "cmp."  # widget key prefix of this page
# "All runs" shows these by default (they fit the page's width); the toggle shows every column
RUN_COLUMNS = [
    "variant",
    "seed",
    "test_metric",
    "epochs_run",
    "best_epoch",
    "stopped_reason",
    "train_seconds",
    "params",
    "regime_nmi",
    "min_load",
    "message",
]  # stopped_reason says "diverged" too


def _default(key: str, value: Any) -> str:
    if K + key not in st.session_state:
        st.session_state[K + key] = value
    return K + key


def server_ray_address_text() -> str:
    try:
        return server_ray_address() or ""
    except KamoeError as err:
        return f"(invalid: {err})"


def settings_form(base: RunConfig) -> dict[str, Any] | None:
    """The comparison's settings; returns them when the button was pressed."""
    try:
        infos = {i.name: i for i in dataset_infos()}
    except Exception as err:  # a registry problem must not take the page down
        st.error(f"The dataset list could not be loaded: {esc(err)}")
        infos = {}
    names = list(infos) or ["regimes"]
    start = base.data.name if base.data.name in names else ("regimes" if "regimes" in names else names[0])
    with st.form("cmp.form"):
        c1, c2, c3 = st.columns([2, 2, 1])
        dataset = c1.selectbox(
            "Dataset",
            names,
            key=_default("dataset", start),
            format_func=lambda n: f"{getattr(infos.get(n), 'title', n)} ({n})",
            help="The Train page's dataset options are used when it is the same dataset.",
        )
        gates = c2.multiselect(
            "Gates", list(GATE_FAMILIES), key=_default("gates", list(GATE_FAMILIES)), format_func=GATE_LABELS.get
        )
        standard = c3.checkbox(
            "Plain model too",
            key=_default("standard", True),
            help="A single expert without a gate (the paper's 'standard' network).",
        )
        c1, c2, c3, c4 = st.columns(4)
        seeds = c1.number_input(
            "Seeds",
            2,
            20,
            key=_default("seeds", 3),
            step=1,
            help="Each seed changes the initialisation and the batch order. More seeds give "
            "the paired test more power.",
        )
        epochs = c2.number_input("Epochs (at most)", 1, MAX_EPOCHS, key=_default("epochs", base.train.epochs), step=5)
        expert = c3.selectbox(
            "Experts",
            list(EXPERT_TYPES),
            format_func=EXPERT_LABELS.get,
            key=_default("expert", base.model.expert if base.model.expert in ("mlp", "kan") else "mlp"),
            help="LSTM/GRU need a sequence dataset.",
        )
        n_experts = c4.number_input("Number of experts", 2, 16, key=_default("n_experts", base.model.n_experts), step=1)
        c1, c2, c3, c4 = st.columns(4)
        hidden = c1.text_input(
            "Expert layer widths",
            key=_default("hidden", ",".join(map(str, base.model.expert_hidden))),
            help="e.g. 16 or 32,16",
        )
        lr = c2.select_slider(
            "Learning rate",
            sorted({1e-4, 3e-4, 1e-3, 3e-3, 1e-2, base.train.lr}),
            key=_default("lr", base.train.lr),
        )
        patience = c3.number_input(
            "Early stopping (epochs, 0 = off)", 0, 200, key=_default("patience", base.train.early_stopping)
        )
        jobs = c4.number_input(
            "Parallel processes",
            1,
            max(1, cpu_count()),
            key=_default("jobs", 1),
            help="Independent runs in separate processes. 1 = one after the other.",
        )
        if server_ray_address_text():
            st.caption(
                f"Runs go to the Ray cluster at {server_ray_address_text()} (set by the server's "
                f"{RAY_ADDRESS_ENV}); the number of processes is then the cluster's."
            )
        routings = st.multiselect(
            "Routers (optional)",
            list(ROUTERS),
            key=_default("routings", []),
            format_func=lambda name: ROUTERS[name].title,
            help="Each gate also runs with each chosen router (variants gate/router); none = dense routing as on "
            "the Train page. " + ROUTER_HELP,
        )
        changes = recipe_changes(base.train)
        recipe = bool(changes) and st.checkbox(
            "Train as on the Train page: "
            + ", ".join(
                f"{FIELD_LABELS['train.' + k].lower()} {format(v, 'g') if isinstance(v, float) else v}"
                for k, v in changes.items()
            ),
            key=_default("recipe", True),
            help="Off: every variant trains with the library's reference recipe (task loss, one initialisation, "
            "no auxiliary losses), as `python -m kamoe_viz compare` does without options.",
        )
        vary = st.checkbox(
            "Also draw a new train/validation/test split for each seed",
            key=_default("vary", False),
            help="Off: every run uses the same split, so only training randomness varies.",
        )
        pressed = st.form_submit_button("Run comparison", type="primary", icon=":material/play_arrow:", key="cmp.run")
    if not pressed:
        return None
    return dict(
        dataset=dataset,
        gates=gates,
        standard=standard,
        seeds=int(seeds),
        epochs=int(epochs),
        expert=expert,
        n_experts=int(n_experts),
        hidden=hidden,
        lr=float(lr),
        patience=int(patience),
        jobs=int(jobs),
        vary=bool(vary),
        routings=list(routings),
        recipe=bool(recipe),
    )


def run_now(base: RunConfig, s: dict[str, Any]) -> None:
    if not s["gates"] and not s["standard"]:
        st.error("gates: got none; choose at least one gate (or the plain model).")
        return
    try:
        config = comparison_config(
            base,
            **{k: s[k] for k in ("dataset", "n_experts", "expert", "hidden", "epochs", "lr", "patience", "recipe")},
        )
    except KamoeError as err:
        st.error(esc(err))
        return
    n_runs = s["seeds"] * (len(s["gates"]) * max(1, len(s["routings"])) + int(s["standard"]))
    bar = st.progress(0.0, text=f"Starting {n_runs} runs…")
    started = time.perf_counter()

    def progress(p: Any) -> None:
        bar.progress(
            min(1.0, p.fraction),
            text=f"Run {min(p.done + 1, p.total)} of {p.total} · {p.message} · {time.perf_counter() - started:.0f} s",
        )

    try:
        address = server_ray_address()  # set by whoever started the server, never by a visitor
        result = run_comparison(
            config,
            gates=s["gates"],
            seeds=s["seeds"],
            include_standard=s["standard"],
            jobs=s["jobs"],
            on_progress=progress,
            vary_split=s["vary"],
            engine="ray" if address else "local",
            address=address,
            routings=s["routings"] or None,
        )
    except KamoeError as err:
        bar.empty()
        st.error(esc(err))
        return
    except Exception as err:  # never crash the page; the previous result stays
        bar.empty()
        st.error(unexpected(err, "The comparison"))
        return
    bar.empty()
    st.session_state[RESULT] = result


def show_result(res: Any) -> None:
    label = res.metric_label
    t = res.table
    split = (
        "a new split per seed"
        if res.vary_split
        else f"the same split for every run (data seed {res.config['data']['seed']})"
    )
    where = (
        f"on Ray at {res.extra['address']}"
        if res.extra.get("engine") == "ray"
        else f"with {res.jobs} process{'es' if res.jobs != 1 else ''}"
    )
    st.markdown(
        f"**{res.config['data']['name']}** · {len(t)} runs · seeds {res.seeds} · {split} · "
        f"{res.wall_seconds:.0f} s {where}"
    )
    for _, row in t[t["stopped_reason"] == "error"].iterrows():
        st.error(f"{variant_label(row.variant)} seed {row.seed} failed: {esc(row.message)}")
    significant = bool(len(res.stats)) and "beats" in res.verdict.split(":")[0]
    (st.success if significant else st.info)(in_variant_labels(res.verdict), icon=":material/balance:")
    if res.epoch_cap:
        st.info(res.epoch_cap, icon=":material/timer:")
    for _, row in t[t["diverged"].astype(bool)].iterrows():
        st.warning(f"{variant_label(row.variant)} seed {row.seed} diverged: {row.message or 'loss became NaN/inf'}")
    summary = res.summary.merge(res.cost(), on="variant").merge(res.routing_means(), on="variant", how="left")
    summary["variant"] = summary["variant"].map(variant_label)
    st.dataframe(
        summary,
        hide_index=True,
        width="stretch",
        column_config={
            "variant": st.column_config.Column("variant", pinned=True),  # stays in view when the table scrolls
            "mean": st.column_config.NumberColumn(f"mean {label}", format="%.4f"),
            "std": st.column_config.NumberColumn("std", format="%.4f"),
            "ci_low": st.column_config.NumberColumn("95% CI low", format="%.4f"),
            "ci_high": st.column_config.NumberColumn(
                "95% CI high", format="%.4f", help="Clipped to what the metric can reach (R² and accuracy: at most 1)."
            ),
            "sem": None,
            "min": None,
            "max": None,
            "params": st.column_config.NumberColumn("parameters", format="%d"),
            "train_seconds": st.column_config.NumberColumn("s per run", format="%.2f"),
            "epochs_run": st.column_config.NumberColumn("epochs (mean)", format="%.0f"),
            **{
                key: st.column_config.NumberColumn(
                    ROUTING_METRIC_LABELS[key], format="%.2f", help=ROUTING_METRIC_DEFINITIONS[key]
                )
                for key in ROUTING_METRIC_LABELS
                if key in summary.columns
            },
            "regime_nmi": st.column_config.NumberColumn(
                ROUTING_METRIC_LABELS["nmi"], format="%.2f", help=ROUTING_METRIC_DEFINITIONS["nmi"]
            ),
            "gate_entropy": st.column_config.NumberColumn(
                ROUTING_METRIC_LABELS["routing_entropy"],
                format="%.2f",
                help=ROUTING_METRIC_DEFINITIONS["routing_entropy"],
            ),
        },
    )
    left, right = st.columns(2)
    bounded = res.metric in ("r2", "accuracy")  # neither can exceed 1
    left.altair_chart(cc.metric_chart(t, res.summary, label, upper_bound=1.0 if bounded else None), width="stretch")
    log = right.toggle("Log scale", value=True, key="cmp.log")
    right.altair_chart(cc.loss_curves_chart(res.histories, log_scale=log), width="stretch")
    st.altair_chart(cc.cost_chart(res.cost()))
    if len(res.gate_samples):
        st.subheader("Gate weights on the same test rows")
        seeds = sorted(set(res.gate_samples["seed"]))
        pick = st.selectbox("Seed", ["all seeds"] + seeds, key="cmp.gate_seed")
        st.altair_chart(cc.gate_distribution_chart(res.gate_samples, None if pick == "all seeds" else int(pick)))
        if res.expert_matching:
            st.caption(res.expert_matching)
        st.caption(
            "Normalised gate entropy per run is in the table below (0 = one expert per input, "
            "1 = all experts equally); regime agreement (NMI) appears when the dataset knows its regimes."
        )
    if len(res.stats):
        st.subheader("Paired comparisons")
        n_pairs = len(res.seeds)
        st.caption(
            f"Pairs share the seed. Decision by the paired t-test at 5% (its 95% CI excludes 0); the "
            f"Wilcoxon signed-rank test is shown too (with {n_pairs} seeds it cannot go below "
            f"p = {2 / 2**n_pairs:.3g})."
        )
        for line in res.stats["verdict"]:
            st.markdown(f"- {in_variant_labels(line)}")
        with st.expander("Statistics table"):
            st.dataframe(res.stats.drop(columns=["verdict"]), hide_index=True)
    st.subheader("All runs")
    every = st.toggle(
        "Every column",
        value=False,
        key="cmp.all_columns",
        help="Off: the columns that tell the runs apart (the rest are the same for every run or are "
        "in the CSV). On: all of them; scroll the table sideways.",
    )
    shown = t.assign(variant=t["variant"].map(variant_label))
    st.dataframe(
        shown,
        hide_index=True,
        width="stretch",
        column_order=None if every else [c for c in RUN_COLUMNS if c in shown.columns],
        column_config={
            **readable_columns(t),
            "variant": st.column_config.Column("variant", pinned=True),
            "test_metric": st.column_config.NumberColumn(f"test {label}", format="%.4f"),
            "epochs_run": st.column_config.NumberColumn("epochs"),
            "best_epoch": st.column_config.NumberColumn("best"),
            "stopped_reason": st.column_config.Column("stopped by"),
            "train_seconds": st.column_config.NumberColumn("s", format="%.2f", help="training seconds"),
            "regime_nmi": st.column_config.NumberColumn(ROUTING_METRIC_LABELS["nmi"], format="%.2f"),
            "min_load": st.column_config.NumberColumn(ROUTING_METRIC_LABELS["min_load"], format="%.2f"),
        },
    )
    st.download_button(
        "Download runs (CSV)",
        res.to_csv(),
        file_name="comparison.csv",
        mime="text/csv",
        icon=":material/download:",
        key="cmp.download",
    )


st.title("Compare gates")
st.markdown(
    "Does a GRKAN gate beat a GRN or a linear gate **here**? Each gate trains on the same data, split, "
    "experts and settings, once per seed; the seed changes the initialisation and the batch order "
    "(the data split stays fixed unless you ask for a new one per seed). Runs are then compared in pairs "
    "that share a seed. The form starts from the Train page's dataset, experts and schedule; the progress bar "
    "says how far it is, and the command line (`python -m kamoe_viz compare`) runs bigger sweeps."
)
base_config = master()
chosen = settings_form(base_config)
if chosen is not None:
    run_now(base_config, chosen)
result = st.session_state.get(RESULT)
if result is not None:
    show_result(result)
else:
    st.caption("No comparison yet in this session: choose settings and press Run comparison.")
