"""Saved runs: :class:`RunStore` keeps each trained run (config, safetensors weights, metrics, history, dataset)
in its own folder, written atomically, and moves runs in and out as one checked .zip file.

The code lives in :mod:`kamoe_viz.runstore` (file format, encoding, the store); this module is the public name.
"""
from kamoe_viz.runstore import ENV_ROOT, FORMAT_VERSION, LIST_COLUMNS, MIGRATIONS, RunStore, check_run_id

__all__ = ["ENV_ROOT", "FORMAT_VERSION", "LIST_COLUMNS", "MIGRATIONS", "RunStore", "check_run_id"]
