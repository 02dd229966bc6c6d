"""Gates page: how the gate routes inputs to experts."""

from __future__ import annotations

import streamlit as st

from kamoe_viz import charts as ch
from kamoe_viz import routing_metrics as rm
from kamoe_viz.interpret import gates as gt
from kamoe_viz_app import entry
from kamoe_viz_app import timeline_ui as tl_ui
from kamoe_viz_app.interpret_ui import (
    REFERENCE_ROWS,
    cached,
    gate_label,
    guarded,
    page_start,
    show_chart,
    show_table,
    show_text_table,
)

entry.ensure(__file__)  # drawn inside the app (see kamoe_viz_app/entry.py)

run = page_start(
    "Gates",
    "How the gate routes inputs: each expert's weight distribution, load and utilisation, routing entropy, where in "
    "the input space each expert wins, and how each gate weight depends on each feature.",
    single_expert_note="This run is a single expert without a gate: every input goes to the one expert (weight "
    "1). Train a mixture (2 or more experts) to see routing.",
)
model, data = run.model, run.dataset

split = st.segmented_control(
    "Rows",
    ["train", "val", "test"],
    default="test",
    key="gates_split",
    help=f"Which split's rows to summarise (at most {REFERENCE_ROWS}, a fixed sample); "
    "held-out test rows by default, as on the Experts and Attribution pages",
)
split = split or "test"
wide = cached(run, f"gates_wide:{split}", lambda: gt.gate_weights_frame(model, data, split, REFERENCE_ROWS))
summary = cached(run, f"gates_summary:{split}", lambda: gt.gate_summary(model, data, split, REFERENCE_ROWS))
expert_cols = [c for c in wide.columns if c.startswith("expert ")]
loads = cached(run, f"gates_load:{split}", lambda: gt.load_table(wide[expert_cols].to_numpy(), summary["activation"]))

# ----- headline ---------------------------------------------------------------------------------------------------
cols = st.columns(4)
cols[0].metric(
    f"Gate ({summary['activation']})",
    gate_label(run),
    help="Gate family and its output activation (softmax: a row's weights sum to 1; sigmoid: they need not).",
)
cols[1].metric("Mean routing entropy", f"{summary['mean_routing_entropy']:.2f}", help=summary["entropy_definition"])
cols[2].metric(
    "Load balance",
    f"{summary['load_balance_entropy']:.2f}",
    help="Entropy of the experts' normalised shares divided by log(E): 1 = all experts carry the same "
    "share, 0 = one expert carries everything.",
)
cols[3].metric("Rows", f"{summary['rows']:,}")
if summary["dead"]:
    st.warning(
        f"Dead expert(s): {', '.join(summary['dead'])}: they win (almost) no row (top-1 share < 1%) and "
        f"carry a tiny share of the weight (< 0.1 / number of experts).",
        icon="⚠️",
    )
if summary["always_on"]:
    st.warning(
        f"Always-on expert(s): {', '.join(summary['always_on'])}: they win ≥ 99% of the rows"
        + (" or keep a weight above 0.9 on 95% of them" if summary["activation"] == "sigmoid" else "")
        + ", so the gate hardly routes.",
        icon="⚠️",
    )

# ----- how routing formed while training --------------------------------------------------------------------------
tl_ui.timeline_section(run, "gates", lambda timeline, snap: tl_ui.draw_gates(timeline, snap, run), story=True)

# ----- load and weights -------------------------------------------------------------------------------------------
st.subheader("Load and utilisation")
st.caption(summary["load_definition"])
with guarded("Load chart"):
    show_chart(run, f"gate_load_{split}", lambda: ch.load_chart(loads))
show_table(loads, f"gate_load_{split}")

st.subheader("Routing metrics")
st.caption(
    "The literature's balance and specialisation measures on the same rows; here load is each expert's top-1 "
    "share (the fraction of routed rows where it has the largest weight, summing to 1)."
)
routing = cached(
    run,
    f"gates_routing:{split}",
    lambda: rm.routing_summary(
        wide[expert_cols].to_numpy(),
        wide["regime"].to_numpy() if "regime" in wide else None,
        run.config.train.batch_size,
    ),
)
show_text_table(rm.routing_metrics_table(routing), f"routing_metrics_{split}")
hint = gt.specialisation_hint(routing["nmi"], run.config.train)
if hint:
    st.info(hint, icon=":material/lightbulb:")

st.subheader("Gate weight distribution")
style = st.segmented_control("Show as", ["histogram", "violin"], default="histogram", key="gates_style")
with guarded("Weight distribution"):
    build = ch.weight_violin_chart if style == "violin" else ch.weight_histogram_chart
    show_chart(run, f"gate_weights_{style}_{split}", lambda: build(gt.weights_long(wide)))
    show_table(wide, f"gate_weights_{split}", height=200)

# ----- where each expert wins ------------------------------------------------------------------------------------
feats = list(data.feature_names)
if data.is_sequence:
    st.subheader("Gate weights over time")
    st.caption(
        "Each expert's weight per window of the test split in time order; the band underneath shows the "
        "true regime where the dataset has one."
    )
    with guarded("Gates over time"):
        over = cached(run, "gates_time", lambda: gt.gates_over_time(model, data, "test"))
        show_chart(run, "gates_over_time", lambda: ch.gates_over_time_chart(over))
        show_table(over, "gates_over_time", height=200)
elif data.n_features >= 2:
    st.subheader("Where each expert wins")
    if data.is_2d:
        pair = (0, 1)
        st.caption(
            "The input plane in the data's original units, coloured by the winning expert (paler = lower "
            "weight), with the training data on top."
        )
    else:
        st.caption(
            "A slice through two features (the others held at their training mean), coloured by the "
            "winning expert; the data on top are all rows projected onto the two features."
        )
        a, b = st.columns(2)
        fx = a.selectbox("x feature", feats, index=0, key="gates_fx")
        fy = b.selectbox("y feature", feats, index=1, key="gates_fy")
        pair = (feats.index(fx), feats.index(fy))
    if pair[0] == pair[1]:
        st.info("Choose two different features.")
    else:
        with guarded("Region map"):
            grid = cached(run, f"gates_region:{pair}", lambda: gt.region_map(model, data, pair, resolution=60))
            points = cached(run, f"gates_points:{pair}", lambda: gt.region_points(model, data, pair, max_rows=800))
            x_name, y_name = feats[pair[0]], feats[pair[1]]
            show_chart(
                run, f"region_winner_{x_name}_{y_name}", lambda: ch.region_winner_chart(grid, points, x_name, y_name)
            )
            show_chart(
                run, f"region_weights_{x_name}_{y_name}", lambda: ch.region_weight_charts(grid, points, x_name, y_name)
            )
            show_table(grid, f"region_map_{x_name}_{y_name}", height=160)

st.subheader("Partial dependence of each gate weight on each feature")
st.caption(
    "Each feature in turn is set to values across its training range (2nd to 98th percentile) on a fixed "
    "sample of 300 training rows, the other features as they are; lines show the mean gate weight."
)
with guarded("Partial dependence"):
    pdp = cached(run, "gates_pdp", lambda: gt.partial_dependence(model, data, n_values=20, max_rows=300))
    show_chart(run, "gate_partial_dependence", lambda: ch.partial_dependence_chart(pdp, columns=4))
    show_table(pdp, "gate_partial_dependence", height=160)
