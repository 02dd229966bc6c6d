"""The app's frame, drawn on every run: page setup, the menu, the sidebar, then the open page.

app.py calls :func:`main`. Each page calls :func:`ensure` first, for the one case where Streamlit runs a page file
without app.py: until some session has called ``st.navigation``, a fresh server is in Streamlit's older folder mode
(see :mod:`kamoe_viz_app.navigation`), and the first request for a page address such as ``/compare`` (a tab left
open while the server restarted) runs ``pages/compare.py`` alone. :func:`ensure` then draws the same frame around
the page in that very run (no rerun, so a click or an upload in it is not lost), and ``st.navigation`` switches the
folder mode off for good.
"""

from __future__ import annotations

import sys
import threading
from pathlib import Path

import streamlit as st

from kamoe_viz import serving
from kamoe_viz.training import configure_cpu_threads
from kamoe_viz_app import navigation, safe
from kamoe_viz_app.state import render_sidebar
from kamoe_viz_app.train_live import drain

_RUN = threading.local()  # each script run has its own thread
ABOUT = (
    "KAMoE Explorer: train small mixtures of experts (linear, GRN, GRKAN gates) and see their gating. "
    "Paper: arXiv 2409.15161."
)


def main(app_dir: Path) -> None:
    """One run of the app: ``app_dir`` is app.py's folder (pages/ and data/icon.png are in it)."""
    # Server settings come from whoever starts the server (`streamlit run app.py -- --runs-dir X`), never from a
    # visitor. Under Streamlit sys.argv is app.py followed by the arguments after `--`; under a test runner it is not.
    if Path(sys.argv[0]).name == "app.py":
        serving.apply_args(sys.argv[1:])
    icon = app_dir / "data" / "icon.png"  # local: a :material/ icon is fetched from Google
    st.set_page_config(page_title="KAMoE Explorer", page_icon=str(icon), layout="wide", menu_items={"About": ABOUT})
    configure_cpu_threads()  # one torch thread per training (KAMOE_THREADS overrides): sessions share the cores
    page = navigation.navigation()
    navigation.menu()
    drain()  # a training that finished in the background becomes the current run, whichever page is open
    render_sidebar()
    _RUN.active = True
    try:
        safe.guard(page.run)  # visitors see a short message and a reference; the traceback goes to the server log
    finally:
        _RUN.active = False


def ensure(page_file: str) -> None:
    """A page (``page_file`` is its ``__file__``) run without app.py: draw the app around it, then end this run."""
    if getattr(_RUN, "active", False):
        return
    main(Path(page_file).resolve().parents[1])
    st.stop()
