"""Settings chosen by whoever starts the server, never by a browser visitor.

``streamlit run app.py -- --runs-dir X --max-params N --max-memory-mb M --debug`` (or the environment variables
they set: KAMOE_RUNS_DIR, KAMOE_MAX_PARAMS, KAMOE_MAX_MEMORY_MB, KAMOE_DEBUG). The flags win over the environment;
they are copied into the environment once, so the library (run store, cost budget, error reports) reads one place.
"""

from __future__ import annotations

import argparse
import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

ENV_RUNS_DIR = "KAMOE_RUNS_DIR"
ENV_DEBUG = "KAMOE_DEBUG"
ENV_MAX_PARAMS = "KAMOE_MAX_PARAMS"
ENV_MAX_MEMORY_MB = "KAMOE_MAX_MEMORY_MB"
DEFAULT_RUNS_DIR = "runs"

log = logging.getLogger("kamoe_viz.app")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="streamlit run app.py --",
        add_help=False,
        description="KAMoE Explorer server settings (after streamlit's own '--').",
    )
    p.add_argument("--runs-dir", help=f"folder of saved runs (env {ENV_RUNS_DIR}; default ./{DEFAULT_RUNS_DIR})")
    p.add_argument("--max-params", type=int, help=f"largest model, in parameters (env {ENV_MAX_PARAMS})")
    p.add_argument("--max-memory-mb", type=int, help=f"largest training memory estimate (env {ENV_MAX_MEMORY_MB})")
    p.add_argument("--debug", action="store_true", help=f"show error details to visitors (env {ENV_DEBUG}=1)")
    return p


def apply_args(argv: Sequence[str], environ: os._Environ[str] | dict[str, str] = os.environ) -> list[str]:
    """Copy the server flags in ``argv`` into ``environ``; returns the arguments that were not understood."""
    args, unknown = parser().parse_known_args(list(argv))
    for value, name in (
        (args.runs_dir, ENV_RUNS_DIR),
        (args.max_params, ENV_MAX_PARAMS),
        (args.max_memory_mb, ENV_MAX_MEMORY_MB),
    ):
        if value is not None:
            environ[name] = str(value)
    if args.debug:
        environ[ENV_DEBUG] = "1"
    return unknown


def runs_dir(environ: Mapping[str, str] = os.environ) -> Path:
    """The server's runs folder (the same for every visitor)."""
    return Path(environ.get(ENV_RUNS_DIR) or DEFAULT_RUNS_DIR)


def runs_dir_label(environ: Mapping[str, str] = os.environ) -> str:
    """How pages name the runs folder: relative to the server's working folder when inside it, else by its name
    alone (a visitor never sees where on the server it lies; whoever started the server chose it and knows)."""
    folder = runs_dir(environ).expanduser().resolve()
    try:
        return str(folder.relative_to(Path.cwd().resolve()))
    except ValueError:
        return folder.name


def debug(environ: Mapping[str, str] = os.environ) -> bool:
    """Developers' switch: error details (tracebacks) shown in the page as well as in the server log."""
    return (environ.get(ENV_DEBUG) or "").strip().lower() not in ("", "0", "false", "no")
