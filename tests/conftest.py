"""Test-wide setup. Idle OpenMP threads must sleep, not spin: on a 2-core machine running several torch processes
(the app server, worker processes, pytest itself) spinning threads make training many times slower. This must be
set before torch is first imported, which is why it lives here."""

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
# Developers' mode: an unforeseen error in a page reaches Streamlit (and AppTest's at.exception) instead of the
# visitors' short message; tests/test_security_errors.py checks the visitors' mode.
os.environ.setdefault("KAMOE_DEBUG", "1")


def pytest_sessionstart(session):
    """Build (or find) the native KAN kernel before any test trains, so every test in the session takes the same
    path through the KAN layers (a background build finishing mid-session would otherwise switch paths)."""
    from kamoe_viz.nn.fast import native

    native.build()
