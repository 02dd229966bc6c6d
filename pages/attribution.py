"""Attribution page: which input features drive each expert's gate weight and the prediction (Captum)."""

from __future__ import annotations

import streamlit as st

from kamoe_viz import charts as ch
from kamoe_viz.interpret import attribution as at
from kamoe_viz.interpret import splines as sp
from kamoe_viz_app import entry
from kamoe_viz_app.interpret_ui import REFERENCE_ROWS, cached, guarded, page_start, show_chart, show_table

entry.ensure(__file__)  # drawn inside the app (see kamoe_viz_app/entry.py)

GLOBAL_ROWS = 400
IG_STEPS, IG_MAX_STEPS = 64, 512  # Integrated Gradients: steps to start with, and the most it doubles to

run = page_start(
    "Attribution",
    "Which input features drive each expert's gate weight and the model's prediction, "
    "with Captum's Integrated Gradients and Feature Ablation.",
)
st.info(
    "**These are not the spline importances.** " + at.NOT_SPLINES_NOTE + " Both are shown side by side below.", icon="ℹ️"
)

model, data = run.model, run.dataset
targets = at.attribution_targets(model)
c1, c2 = st.columns([1, 2])
baseline = c1.radio(
    "Baseline",
    list(at.BASELINES),
    key="attr_baseline",
    horizontal=True,
    format_func=lambda b: "training mean" if b == "mean" else "zeros",
    help="; ".join(f"{'training mean' if k == 'mean' else 'zeros'}: {v}" for k, v in at.BASELINES.items()),
)
target = c2.selectbox(
    "Explain",
    targets,
    key="attr_target",
    help="The prediction (classification: the logit of the predicted class) or one expert's gate weight",
)
c1.caption(f"Baseline = {at.BASELINES[baseline]}.")

attributions, deltas = cached(
    run,
    f"attr_global:{baseline}",
    lambda: at.global_attributions(
        model,
        data,
        targets=targets,
        baseline=baseline,
        split="test",
        max_rows=GLOBAL_ROWS,
        n_steps=IG_STEPS,
        max_steps=IG_MAX_STEPS,
    ),
    spinner="Computing attributions (once per model and baseline)…",
)

# ----- global -----------------------------------------------------------------------------------------------------
st.subheader("Global: mean |attribution| over test rows")
st.caption(
    f"Averaged over a fixed sample of up to {GLOBAL_ROWS} test rows. Integrated Gradients uses {IG_STEPS} steps "
    f"(trapezoid rule), doubled up to {IG_MAX_STEPS} while its convergence delta (how far the attributions' sum "
    f"is from f(x) − f(baseline)) exceeds {at.CONVERGED_DELTA:.0%} of the output change; the table below has "
    "the delta and the steps used."
)
loose = deltas[deltas["relative_delta"] > at.CONVERGED_DELTA]
if len(loose):
    st.warning(
        "Integrated Gradients has not fully converged for " + ", ".join(loose["target"]) + f" even with "
        f"{IG_MAX_STEPS} steps (mean |delta| above {at.CONVERGED_DELTA:.0%} of the mean output change): read "
        "those bars as approximate.",
        icon="⚠️",
    )
layers = cached(run, "spline_layers", lambda: sp.kan_layer_table(model, data))
spline_inputs, layer = None, None
if not layers.empty:
    importance = cached(
        run,
        "spline_importance",
        lambda: sp.edge_importance(
            model, data, cached(run, "spline_inputs", lambda: sp.layer_inputs(model, data, max_rows=REFERENCE_ROWS))
        ),
    )
    spline_inputs = sp.input_importance(importance)
    layer = st.selectbox(
        "Spline importance of layer",
        list(layers["layer"]),
        key="attr_layer",
        help="Sum over each input's edges of mean |φ(x)| (Splines page). For experts.layer1 the "
        "inputs are the features; for the gate's KAN layers they are hidden units.",
    )
with guarded("Attribution chart"):
    show_chart(
        run,
        f"attribution_{target}_{baseline}_{layer}",
        lambda: ch.side_by_side_chart(attributions, spline_inputs, target, layer),
    )
if layers.empty:
    st.caption(
        "This model has no KAN layers (no GRKAN gate, no KAN experts), so there are no spline importances "
        "to compare with."
    )
# one above the other at full width: side by side, the convergence table's columns were cut off at its edge
show_table(attributions[attributions["target"] == target], f"attributions_{target}_{baseline}", height=220)
st.caption("Integrated Gradients convergence per target:")
show_table(
    deltas,
    f"ig_convergence_{baseline}",
    column_config={
        "mean_abs_delta": st.column_config.NumberColumn("mean |delta|", format="%.2e"),
        "max_abs_delta": st.column_config.NumberColumn("max |delta|", format="%.2e"),
        "mean_abs_output_change": st.column_config.NumberColumn("mean |f(x) − f(base)|", format="%.3g"),
        "relative_delta": st.column_config.NumberColumn("|delta| / change", format="percent"),
    },
)

# ----- one row ----------------------------------------------------------------------------------------------------
st.subheader("One row")
n_test = len(data.X_test)
row = int(st.number_input(f"Test row (0 – {n_test - 1})", 0, max(n_test - 1, 0), 0, key="attr_row"))
with guarded("Row attribution"):
    one = cached(
        run,
        f"attr_row:{row}:{baseline}",
        lambda: at.row_attributions(model, data, row, "test", baseline, targets=targets, n_steps=128),
    )
    sel = one[one["target"] == target]
    first = sel.iloc[0]
    delta = sel["delta"].dropna()
    st.markdown(
        f"Output **{first['f_x']:.4g}**, at the baseline **{first['f_baseline']:.4g}**; Integrated "
        f"Gradients convergence delta {float(delta.iloc[0]) if len(delta) else float('nan'):.2e}."
    )
    show_chart(
        run, f"row_{row}_{target}_{baseline}", lambda: ch.row_attribution_chart(sel, title=f"{target}, test row {row}")
    )
    show_table(sel, f"row_{row}_attributions_{baseline}", height=200)
