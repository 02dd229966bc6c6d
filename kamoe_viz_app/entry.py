"""Pages run only through app.py, which sets up the page, the navigation and the sidebar.

Why: Streamlit still supports its older multipage mode, in which every file in a ``pages/`` folder is a page of its
own. Until some session has called ``st.navigation`` (app.py does, on every run), a fresh server treats the first
request for a page URL such as ``/compare`` in that old mode: it runs ``pages/compare.py`` alone and lists every
module of ``pages/`` (the private helpers too) in the sidebar. That is exactly what a user sees after restarting the
server with a page tab still open. Each page calls :func:`ensure` first; a run that did not come through app.py
switches the old mode off and reruns, so app.py draws the requested page.
"""
from __future__ import annotations

import threading

import streamlit as st

_RUN = threading.local()  # each script run has its own thread
_REDIRECTS = "_entry_redirects"


def mark(active: bool = True) -> None:
    """app.py: this run goes through the entry point (``False`` once it is over)."""
    _RUN.active = active


def ensure() -> None:
    """Stop a page that is being run on its own and rerun the app through app.py."""
    if getattr(_RUN, "active", False):
        return
    count = st.session_state.get(_REDIRECTS, 0)
    if count < 3:  # never loop: after a few tries the page says what happened instead
        st.session_state[_REDIRECTS] = count + 1
        try:
            from streamlit.runtime.pages_manager import PagesManager

            PagesManager.uses_pages_directory = False  # what st.navigation itself sets on its first call
        except (ImportError, AttributeError):
            pass
        st.rerun()
    st.error("This page was opened outside the app's navigation. Open the app's address without a page name "
             "(for example http://127.0.0.1:8501/) and choose the page in the sidebar.")
    st.stop()
