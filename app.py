"""KAMoE Explorer: Streamlit entry point (page setup, navigation and the sidebar only).

Start with ``bash scripts/app.sh`` or ``streamlit run app.py`` (binds to 127.0.0.1, see .streamlit/config.toml).
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

# Idle OpenMP threads sleep instead of spinning: with several sessions training at once (or a busy machine),
# spinning torch threads fight over the cores and small-batch training gets many times slower. Set before torch
# is first imported (by a page); an explicit OMP_WAIT_POLICY in the environment wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import streamlit as st  # noqa: E402

from kamoe_viz import serving  # noqa: E402

# Server settings come from whoever starts the server (`streamlit run app.py -- --runs-dir X`), never from a visitor.
# Under Streamlit sys.argv is this script followed by the arguments after `--`; under a test runner it is not.
if Path(sys.argv[0]).name == "app.py":
    serving.apply_args(sys.argv[1:])

from kamoe_viz.training import configure_cpu_threads  # noqa: E402
from kamoe_viz_app import entry, safe  # noqa: E402
from kamoe_viz_app.state import render_sidebar  # noqa: E402
from kamoe_viz_app.train_live import drain  # noqa: E402

ICON = Path(__file__).resolve().parent / "data" / "icon.png"  # local: a :material/ icon is fetched from Google
st.set_page_config(page_title="KAMoE Explorer", page_icon=str(ICON), layout="wide",
                   menu_items={"About": "KAMoE Explorer: train small mixtures of experts (linear, GRN, GRKAN "
                                        "gates) and see their gating. Paper: arXiv 2409.15161."})

PAGES = [
    st.Page("pages/train.py", title="Train", icon=":material/model_training:", default=True),
    st.Page("pages/splines.py", title="Splines", icon=":material/show_chart:"),
    st.Page("pages/gates.py", title="Gates", icon=":material/alt_route:"),
    st.Page("pages/experts.py", title="Experts", icon=":material/groups:"),
    st.Page("pages/compare.py", title="Compare", icon=":material/compare_arrows:"),
    st.Page("pages/attribution.py", title="Attribution", icon=":material/insights:"),
    st.Page("pages/runs.py", title="Runs", icon=":material/folder_open:"),
]

configure_cpu_threads()  # one torch thread per training (KAMOE_THREADS overrides): sessions share the cores
page = st.navigation(PAGES)
drain()  # a training that finished in the background becomes the current run, whichever page is open
render_sidebar()
entry.mark()  # pages check that they run through this file (see kamoe_viz_app/entry.py)
try:
    safe.guard(page.run)  # visitors see a short message and a reference; the traceback goes to the server log
finally:
    entry.mark(False)
