"""Splines page: every learned KAN edge φ(x) of the GRKAN gate and of KAN experts."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from kamoe_viz import charts as ch
from kamoe_viz.charts.splines import EDGE_PICK
from kamoe_viz.errors import KamoeError
from kamoe_viz.interpret import grids as gr
from kamoe_viz.interpret import splines as sp
from kamoe_viz.interpret import symbolic as sym
from kamoe_viz_app import entry
from kamoe_viz_app import timeline_ui as tl_ui
from kamoe_viz_app.config_state import set_master
from kamoe_viz_app.interpret_ui import (
    REFERENCE_ROWS,
    cached,
    gate_label,
    guarded,
    replace_model,
    show_chart,
    show_table,
)
from kamoe_viz_app.safe import esc
from kamoe_viz_app.state import TRAIN_PAGE, require_run, set_current_run

entry.ensure(__file__)  # drawn inside the app (see kamoe_viz_app/entry.py)


def _picked_edge(event) -> tuple[int, int] | None:
    """(input, output) of the panel clicked in the small multiples, if any."""
    try:
        points = event.selection[EDGE_PICK]
        return (int(points[0]["input"]), int(points[0]["output"])) if points else None
    except (AttributeError, KeyError, IndexError, TypeError, ValueError):
        return None


st.title("Splines")
st.caption(
    "Every learned KAN edge φ(x) of the GRKAN gate and of KAN experts, drawn over the range of the data it "
    "sees (the training split), split into its base and spline parts on demand."
)
run = require_run()
if run is None:
    st.stop()

model, data = run.model, run.dataset
inputs = cached(run, "spline_inputs", lambda: sp.layer_inputs(model, data, max_rows=REFERENCE_ROWS))
layers = cached(run, "spline_layers", lambda: sp.kan_layer_table(model, data))

if layers.empty:
    gate = gate_label(run)
    st.warning(
        f"This model's gate is **{gate}** and its experts are **{run.config.model.expert.upper()}**: it has "
        "no splines. Only the GRKAN gate and KAN experts learn edge functions φ(x).",
        icon="⚠️",
    )
    st.write("Train the same setup with a GRKAN gate to see its splines.")
    if st.button("Switch the gate to GRKAN on the Train page", type="primary", icon=":material/swap_horiz:"):
        wanted = run.config.to_dict()  # a copy: the trained run keeps its own settings
        wanted["model"].update(gate="grkan", kind="moe")
        set_master(wanted, reseed=True)
        st.switch_page(TRAIN_PAGE)
    st.stop()

if not (layers["part"] == "gate").any():
    st.info(f"The **{gate_label(run)}** gate has no splines; showing the KAN experts' edges.", icon="ℹ️")

if (layers["part"] == "gate").any():
    tl_ui.timeline_section(run, "splines", tl_ui.draw_splines)

importance = cached(run, "spline_importance", lambda: sp.edge_importance(model, data, inputs))
coverage = cached(run, "spline_coverage", lambda: gr.grid_coverage_table(model, data, inputs))


def _blank_shared(frame):
    """The expert column with no number where a layer or edge belongs to no single expert (the gate's layers; the
    library marks them -1)."""
    return frame.assign(expert=frame["expert"].astype("Int64").mask(frame["expert"] < 0))


# ----- layer choice and grid coverage ----------------------------------------------------------------------------
with st.expander("KAN layers of this model", icon=":material/layers:"):
    show_table(_blank_shared(layers), "kan_layers")
labels = {row.layer: f"{row.layer} · {row.inputs}→{row.outputs} ({row.edges} edges)" for row in layers.itertuples()}
layer = st.selectbox(
    "Layer",
    list(labels),
    format_func=labels.get,
    key="spl_layer",
    help="gate.kan1 reads the gate's hidden units h = ReLU(Dense(x)); gate.kan2 reads kan1's "
    "outputs; experts.layer1 reads the (standardised, input-scaled) features.",
)
row = layers.set_index("layer").loc[layer]
st.caption(
    f"Inputs of this layer: {row.input_kind}. Grid size {row.grid_size}, spline order {row.spline_order}, "
    f"base function {row.base}."
)
layer_imp = importance[importance["layer"] == layer]
layer_cov = coverage[coverage["layer"] == layer]

outside = coverage[coverage["warn"]]
if len(outside):
    worst = outside.sort_values("outside_fraction", ascending=False).head(5)
    listing = ", ".join(f"{r.layer}/{r.input_name} ({r.outside_fraction:.0%})" for r in worst.itertuples())
    in_layer = int(layer_cov["warn"].sum())
    here = (
        f"In the selected layer {layer}: {in_layer} of {len(layer_cov)} input(s)."
        if in_layer
        else f"The selected layer {layer} is fine: all its inputs lie mostly inside its grid."
    )
    st.warning(
        f"Across all KAN layers of this model, {len(outside)} layer input(s) have more than "
        f"{gr.OUTSIDE_GRID_WARNING:.0%} of the training data outside the spline grid, where only the base "
        f"function acts (layer/input): {listing}. {here} A grid update (all layers) moves each grid onto the "
        "data and refits the spline coefficients to keep the learned functions.",
        icon="⚠️",
    )
    if st.button("Update grid (on a copy of the model)", icon=":material/grid_on:", key="spl_update"):
        try:
            new_model, report = gr.update_grids(model, data)
            st.session_state["_spl_grid_update"] = (id(run), new_model, report)
        except KamoeError as err:
            st.error(f"Grid update: {esc(err)}")
pending = st.session_state.get("_spl_grid_update")
if pending and pending[0] == id(run):
    _, new_model, report = pending
    st.markdown("**Grid update result** (loss = training loss on scaled targets; before = current model)")
    show_table(report, "grid_update_report")
    keep, drop = st.columns(2)
    if keep.button("Use the updated model", type="primary", key="spl_keep"):
        st.session_state.pop("_spl_grid_update", None)
        set_current_run(replace_model(run, new_model))
        st.rerun()
    if drop.button("Discard", key="spl_drop"):
        st.session_state.pop("_spl_grid_update", None)
        st.rerun()
with st.expander("Grid coverage per input", icon=":material/fit_screen:"), guarded("Grid coverage"):
    show_chart(run, f"grid_coverage_{layer}", lambda: ch.coverage_chart(layer_cov, gr.OUTSIDE_GRID_WARNING))
    show_table(layer_cov, f"grid_coverage_{layer}")

# ----- importance and small multiples ----------------------------------------------------------------------------
st.subheader("Edges ranked by importance")
st.caption(sp.IMPORTANCE_DEFINITION + " Panels are faded by importance relative to the layer's top edge.")
c1, c2, c3 = st.columns([2, 1, 2])
threshold = c1.slider("Show edges with relative importance ≥", 0.0, 1.0, 0.1, 0.05, key="spl_threshold")
max_panels = c2.number_input("At most", 1, 48, 12, key="spl_max", help="panels shown, most important first")
parts_choice = c3.segmented_control(
    "Parts",
    ["total", "base + spline"],
    default="total",
    key="spl_parts",
    help="φ(x) = base part w_b·b(x) + spline part Σ c_k B_k(x)",
)
parts = ("total", "base", "spline") if parts_choice == "base + spline" else ("total",)
shown = layer_imp[layer_imp["relative"] >= threshold].nsmallest(int(max_panels), "rank")
st.caption(f"{len(shown)} of {len(layer_imp)} edges shown (above the threshold, at most {int(max_panels)}).")

edges = tuple(zip(shown["input"].astype(int), shown["output"].astype(int)))
used = sorted({i for i, _ in edges})
with guarded("Edge curves"):
    if edges:
        curves = cached(
            run, f"spline_curves:{layer}:{edges}", lambda: sp.edge_curves(model, data, layer, list(edges), inputs)
        )
        knots = cached(run, f"spline_knots:{layer}", lambda: sp.knot_table(model, layer))
        hist = cached(run, f"spline_hist:{layer}", lambda: sp.input_histograms(model, data, layer, None, inputs))
        event = show_chart(
            run,
            f"edges_{layer}_{'_'.join(parts)}_{edges}",
            lambda: ch.edge_grid_chart(
                ch.edge_frame(
                    curves,
                    layer_imp,
                    knots[knots["input"].isin(used)],
                    layer_cov,
                    hist[hist["input"].isin(used)],
                    parts=parts,
                ),
                columns=4,
                selectable=True,
            ),
            select=EDGE_PICK,
            widget_key=f"spl_grid_{layer}",
        )
        st.caption(
            "Click a panel to show that edge large below. Grey bars: where the training data lie. Blue "
            "band: the spline grid range (outside it the spline part is 0). Dashed rules: knots."
        )
        clicked = _picked_edge(event)
        if clicked is not None and clicked != st.session_state.get("_spl_last_click"):
            st.session_state["_spl_last_click"] = clicked
            st.session_state["spl_edge"] = clicked
    else:
        st.info("No edge reaches this threshold; lower it to see edges.")
    with st.expander("Importance of every edge of this layer", icon=":material/bar_chart:"):
        left, right = st.columns([1, 1])
        with left:
            show_chart(
                run, f"edge_importance_{layer}_{threshold:.2f}", lambda: ch.importance_bars(layer_imp, threshold)
            )
        with right:
            show_table(_blank_shared(layer_imp.drop(columns=["layer"])), f"edge_importance_{layer}", height=400)

# ----- one edge large, symbolic fit ------------------------------------------------------------------------------
st.subheader("One edge")
ranked = layer_imp.sort_values("rank")
options = list(zip(ranked["input"].astype(int), ranked["output"].astype(int)))[:200]
names = dict(zip(options, ranked["edge"].head(200)))
if st.session_state.get("spl_edge") not in options:  # e.g. after switching to another layer
    st.session_state.pop("spl_edge", None)
pick = st.selectbox(
    "Edge",
    options,
    format_func=lambda e: f"#{options.index(e) + 1} {names[e]}",
    key="spl_edge",
    help="Edges in order of importance (the 200 most important)",
)
if pick is not None:
    with guarded("Edge detail"):
        one = cached(
            run,
            f"spline_curve1:{layer}:{pick}",
            lambda: sp.edge_curves(model, data, layer, [pick], inputs, n_points=200),
        )
        knots = cached(run, f"spline_knots:{layer}", lambda: sp.knot_table(model, layer))
        hist = cached(run, f"spline_hist:{layer}", lambda: sp.input_histograms(model, data, layer, None, inputs))
        fit_curve = None
        with st.expander("Symbolic fit: a·f(b·x + c) + d", icon=":material/function:"):
            st.caption(
                "Least-squares fit of this edge's curve over the plotted range against a fixed library: "
                + ", ".join(sym.CANDIDATES)
                + ". R² per candidate; the best one is drawn dashed."
            )
            fit_part = st.radio("Fit", ["total", "spline", "base"], horizontal=True, key="spl_fit_part")
            if st.toggle("Fit a formula", key="spl_fit_on"):
                fits = cached(
                    run,
                    f"spline_fit:{layer}:{pick}:{fit_part}",
                    lambda: sym.edge_symbolic_fit(one, fit_part),
                    spinner="Fitting…",
                )
                best = fits.iloc[0]
                st.markdown(f"Best: **{best['candidate']}**, R² = {best['r2']:.4f}  \nφ(x) ≈ `{best['formula']}`")
                show_chart(run, f"symbolic_fit_{layer}_{pick}_{fit_part}", lambda: ch.symbolic_fit_chart(fits))
                show_table(fits, f"symbolic_fit_{layer}_{pick}")
                if fit_part == "total":
                    fit_curve = pd.DataFrame({"x": one["x"], "y": sym.evaluate_fit(best, one["x"].to_numpy())})
        fit_key = "fit" if fit_curve is not None else "nofit"
        show_chart(
            run,
            f"edge_{layer}_{pick[0]}_{pick[1]}_{'_'.join(parts)}_{fit_key}",
            lambda: ch.edge_detail_chart(
                ch.edge_frame(
                    one,
                    layer_imp,
                    knots[knots["input"] == pick[0]],
                    layer_cov,
                    hist[hist["input"] == pick[0]],
                    parts=parts,
                    fit=fit_curve,
                ),
                title=names[pick],
            ),
        )
        show_table(one, f"edge_curve_{layer}_{pick[0]}_{pick[1]}", height=200)
