"""`app`: start the Streamlit app (``kamoe-viz app [STREAMLIT OPTIONS]``), bound to 127.0.0.1 unless told otherwise.

From a checkout the app is the repository's ``app.py``; from an installed package it is the copy the wheel ships in
``kamoe_viz_app/streamlit_app/`` (see setup.py), with its ``.streamlit/config.toml`` next to it, which Streamlit
reads as the script-level config. Further options go to ``streamlit run`` unchanged, e.g.
``kamoe-viz app --server.port 8600``. The library does not import streamlit: this only starts it as a program.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import subprocess
import sys
from pathlib import Path

from kamoe_viz.errors import ValidationError

ADDRESS = "127.0.0.1"
HELP = "start the Streamlit app on 127.0.0.1 (further options go to `streamlit run`, e.g. --server.port 8600)"


def app_script() -> Path:
    """The app's entry script: the checkout's app.py when kamoe_viz runs from a checkout, else the shipped copy."""
    checkout = Path(__file__).resolve().parents[2] / "app.py"
    if checkout.is_file() and (checkout.parent / "pages").is_dir():
        return checkout
    spec = importlib.util.find_spec("kamoe_viz_app")
    if spec is not None and spec.submodule_search_locations:
        for location in spec.submodule_search_locations:
            shipped = Path(location) / "streamlit_app" / "app.py"
            if shipped.is_file():
                return shipped
    raise ValidationError(
        "app",
        str(checkout),
        "a checkout with app.py, or an installed kamoe-viz package "
        "(pip install kamoe-viz) that ships kamoe_viz_app/streamlit_app",
    )


def streamlit_command(options: list[str]) -> list[str]:
    """``python -m streamlit run APP --server.address 127.0.0.1 OPTIONS`` (no address added if one is given)."""
    given = any(o == "--server.address" or o.startswith("--server.address=") for o in options)
    address = [] if given or os.environ.get("STREAMLIT_SERVER_ADDRESS") else ["--server.address", ADDRESS]
    return [sys.executable, "-m", "streamlit", "run", str(app_script()), *address, *options]


def run_app(options: list[str]) -> int:
    """Start Streamlit in place of this process (so a signal to this pid stops the server), or as a child on
    systems without exec."""
    if any(o in ("-h", "--help") for o in options):
        print(
            f"usage: kamoe-viz app [STREAMLIT OPTIONS]\n\n{HELP}.\nStreamlit's own options: "
            "python -m streamlit run --help"
        )
        return 0
    if importlib.util.find_spec("streamlit") is None:
        raise ValidationError("app", "streamlit", "installed streamlit (pip install kamoe-viz)")
    command = streamlit_command(options)
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    sys.stdout.flush()
    sys.stderr.flush()
    if os.name == "posix":
        os.execv(command[0], command)
    return subprocess.call(command)


def add_command(subparsers: argparse._SubParsersAction) -> None:
    """Listed in ``--help``; :func:`kamoe_viz.cli.main` hands ``app ...`` to :func:`run_app` before parsing, so
    Streamlit's dotted options pass through untouched."""
    p = subparsers.add_parser("app", help=HELP, add_help=False)
    p.set_defaults(func=lambda args: run_app([]))
