"""Experts page: which rows each expert wins, agreement with true regimes, per-expert error, ablation."""

from __future__ import annotations

import streamlit as st

from kamoe_viz import charts as ch
from kamoe_viz.interpret import experts as ex
from kamoe_viz_app import entry
from kamoe_viz_app import timeline_ui as tl_ui
from kamoe_viz_app.interpret_ui import cached, guarded, page_start, show_chart, show_table
from kamoe_viz_app.safe import esc

entry.ensure(__file__)  # drawn inside the app (see kamoe_viz_app/entry.py)

run = page_start(
    "Experts",
    "Which rows each expert wins (the expert with the largest gate weight), how that matches the true regimes or "
    "classes, how good each expert is on its own rows, and what removing an expert costs.",
    single_expert_note="This run is a single expert without a gate, so there is no specialisation to show. Train "
    "a mixture (2 or more experts) on the Train page.",
)
model, data = run.model, run.dataset

split = (
    st.segmented_control(
        "Rows",
        ["train", "val", "test"],
        default="test",
        key="experts_split",
        help="Which split to evaluate (every row of it); held-out test rows by default",
    )
    or "test"
)
table = cached(run, f"experts_table:{split}", lambda: ex.routing_table(model, data, split))
kind = table.attrs.get("truth_kind", "")

tl_ui.timeline_section(run, "experts", tl_ui.draw_experts)

# ----- agreement --------------------------------------------------------------------------------------------------
st.subheader("Specialisation")
if kind:
    truth_title = "true regime" if kind == "regime" else "true class"
    score = cached(run, f"experts_agreement:{split}", lambda: ex.agreement(table))
    cols = st.columns(4)
    cols[0].metric(
        "NMI",
        f"{score['nmi']:.2f}",
        help="Normalised mutual information between the winning expert "
        f"and the {truth_title}: 0 = unrelated, 1 = the same grouping up to renaming.",
    )
    cols[1].metric("ARI", f"{score['ari']:.2f}", help="Adjusted Rand index: 0 = chance level, 1 = identical groupings.")
    cols[2].metric(
        "Matched accuracy",
        f"{score['matched_accuracy']:.0%}",
        help=f"Share of rows whose winning expert is the one paired with their {truth_title} by the "
        "best one-to-one matching (Hungarian method).",
    )
    cols[3].metric("Rows", f"{score['rows']:,}")
    level = "strong" if score["nmi"] >= 0.7 else "partial" if score["nmi"] >= 0.3 else "little"
    st.markdown(
        f"**{level.capitalize()} agreement** between the gate's routing and the {truth_title}s "
        f"(NMI {score['nmi']:.2f}). In the heatmap, one dark cell per row means each {truth_title} has its "
        "own expert."
    )
    cont = cached(run, f"experts_contingency:{split}", lambda: ex.contingency(table))
    with guarded("Contingency"):
        show_chart(run, f"contingency_{split}", lambda: ch.contingency_chart(cont, truth_title))
    show_table(cont, f"contingency_{split}", height=200)
else:
    st.info(
        "This dataset has no known regimes or classes, so routing cannot be scored against a ground truth; "
        "the winners per row are in the table below.",
        icon="ℹ️",
    )

# ----- per expert error -------------------------------------------------------------------------------------------
st.subheader("Each expert's error")
unit = "Log loss of the true class" if data.task == "classification" else f"RMSE in {esc(data.target_name)} units"
st.caption(
    f"{unit} of each expert's own prediction (its output through the shared head) on the rows "
    "it wins, on all rows, and of the whole model on the expert's rows. A specialist is good on its own "
    "rows and poor elsewhere."
)
errors = cached(run, f"experts_errors:{split}", lambda: ex.expert_errors(data, table))
with guarded("Expert errors"):
    show_chart(run, f"expert_errors_{split}", lambda: ch.expert_error_chart(errors))
show_table(errors, f"expert_errors_{split}")
idle = errors.loc[errors["rows_won"] == 0, "expert"].tolist()
if idle:
    st.caption(
        f"{', '.join(idle)} win{'s' if len(idle) == 1 else ''} no rows here, so the columns for the rows won are empty."
    )

st.subheader("Each expert's output against the target")
st.caption(
    "Coloured: rows the expert wins; grey: the other rows."
    + (" Dashed: perfect prediction." if data.task != "classification" else "")
)
with guarded("Output vs target"):
    scatter = cached(run, f"experts_scatter:{split}", lambda: ex.expert_vs_target(table, max_points=1500))
    show_chart(run, f"expert_vs_target_{split}", lambda: ch.expert_vs_target_chart(scatter, data.task))

# ----- ablation ---------------------------------------------------------------------------------------------------
st.subheader("Ablation: remove one expert")
activation = run.config.model.gate_activation
st.caption(
    "Metrics with one expert taken out of the mixture. **zeroed**: "
    + ex.ABLATION_MODES["zeroed"]
    + "."
    + (
        " **renormalised**: " + ex.ABLATION_MODES["renormalised"] + "."
        if activation == "softmax"
        else " This gate uses sigmoid weights, which do not sum to 1, so only zeroing is shown."
    )
)
with guarded("Ablation"):
    abl = cached(run, f"experts_ablation:{split}", lambda: ex.ablation(model, data, split))
    show_chart(run, f"ablation_{split}", lambda: ch.ablation_chart(abl))
    show_table(abl.drop(columns="harm"), f"ablation_{split}")  # the chart's "worse by"; the table has the change

with st.expander("Winning expert of every row", icon=":material/table_rows:"):
    show_table(table, f"routing_{split}", height=300)
