"""What visitors see of text they did not write, and of errors nobody foresaw.

``esc``: text from imported runs and uploaded files (run names, notes, dataset, column and target names, messages
quoting them) is shown as text, never as Markdown: a column named ``![t](http://x)`` must not make the visitor's
browser fetch an outside image. ``unexpected``: a short message with a reference for the visitor; the traceback
goes to the server log under that reference (``KAMOE_DEBUG=1`` shows it in the page too, and lets uncaught errors
reach Streamlit).
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Callable
from typing import Any

import streamlit as st

from kamoe_viz import serving

# What could fetch, link or restructure: links and images need [ ] (and !), HTML and autolinks < >, code `, maths
# $, tables |, headings #, colour and icon directives :x[...] (their [ ]). Emphasis (* _) only changes the look,
# and leaving it keeps messages about settings (model.n_experts) readable in their source.
_MARKDOWN = re.compile(r"([\\`\[\]!|<>~$#])")


def esc(value: Any) -> str:
    """``value`` as literal text inside Streamlit Markdown."""
    return _MARKDOWN.sub(r"\\\1", str(value))


def unexpected(err: BaseException, what: str) -> str:
    """Log ``err`` with its traceback under a fresh reference; the short message to show instead of it."""
    reference = secrets.token_hex(4)
    serving.log.error("unexpected error %s (%s)", reference, what, exc_info=err)
    message = (
        f"{what} failed unexpectedly (reference {reference}); whoever runs the server finds the details in "
        "its log under that reference."
    )
    if serving.debug():
        message += f" Details: {type(err).__name__}: {err}"
    return esc(message) if serving.debug() else message


def guard(run: Callable[[], Any], what: str = "This page") -> None:
    """Run a page; an unforeseen error becomes :func:`unexpected`'s message (re-raised with KAMOE_DEBUG=1)."""
    try:
        run()
    except Exception as err:
        if serving.debug():
            raise
        st.error(unexpected(err, what), icon=":material/error:")
