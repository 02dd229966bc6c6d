"""Saved runs: :class:`RunStore` keeps each trained run (config, safetensors weights, metrics, history, dataset)
in its own folder, written atomically, and moves runs in and out as one checked .zip file."""

from kamoe_viz.runstore.fileformat import FORMAT_VERSION, MIGRATIONS, check_run_id
from kamoe_viz.runstore.listing import LIST_COLUMNS
from kamoe_viz.runstore.store import ENV_ROOT, RunStore

__all__ = ["ENV_ROOT", "FORMAT_VERSION", "LIST_COLUMNS", "MIGRATIONS", "RunStore", "check_run_id"]
