"""The app's pages and its one navigation menu: app.py shows it, and a page run on its own hands over to it.

Why the menu is drawn with ``st.page_link`` and not by ``st.navigation``: a ``pages/`` folder beside app.py makes
Streamlit treat a fresh server as an old-style (folder) multipage app until some session has called
``st.navigation`` ("As soon as any session of your app executes the st.navigation command, your app will ignore the
pages/ directory", its docstring). On the first request of a fresh server Streamlit therefore builds a menu from the
file names in ``pages/`` and only then runs app.py. ``client.showSidebarNavigation = false`` (.streamlit/config.toml)
is Streamlit's setting that hides that folder menu; it hides ``st.navigation``'s sidebar menu too, so app.py calls
``st.navigation(position="hidden")`` and draws the menu below with ``st.page_link`` (Streamlit's documented way to
build a custom menu). The first request thus only ever shows this menu.
"""

from __future__ import annotations

from typing import NamedTuple

import streamlit as st
from streamlit.navigation.page import StreamlitPage

MENU_KEY = "app_nav"  # the menu's container: CSS class st-key-app_nav (the browser tests find the links by it)


class PageSpec(NamedTuple):
    path: str  # relative to app.py's folder
    title: str
    icon: str


PAGES = (
    PageSpec("pages/train.py", "Train", ":material/model_training:"),
    PageSpec("pages/splines.py", "Splines", ":material/show_chart:"),
    PageSpec("pages/gates.py", "Gates", ":material/alt_route:"),
    PageSpec("pages/experts.py", "Experts", ":material/groups:"),
    PageSpec("pages/compare.py", "Compare", ":material/compare_arrows:"),
    PageSpec("pages/attribution.py", "Attribution", ":material/insights:"),
    PageSpec("pages/runs.py", "Runs", ":material/folder_open:"),
)


def pages() -> list[StreamlitPage]:
    """The app's pages, Train first (the default page)."""
    return [st.Page(p.path, title=p.title, icon=p.icon, default=i == 0) for i, p in enumerate(PAGES)]


def navigation() -> StreamlitPage:
    """Register the pages with Streamlit (no built-in menu) and return the requested one."""
    return st.navigation(pages(), position="hidden")


def menu() -> None:
    """The sidebar menu: one link per page, the open page highlighted by Streamlit."""
    with st.sidebar.container(key=MENU_KEY):
        for page in pages():
            st.page_link(page)
