"""What the run list shows: one summary row per run folder, read from its manifest and small JSON members only."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from kamoe_viz.errors import KamoeError, RunFileError
from kamoe_viz.runstore import codec
from kamoe_viz.runstore.fileformat import MANIFEST, check_manifest, load_json, verify_members

LIST_COLUMNS = [
    "run_id",
    "name",
    "created",
    "dataset",
    "task",
    "gate",
    "expert",
    "n_experts",
    "metric",
    "value",
    "epochs",
    "params",
    "device",
    "stopped_reason",
    "notes",
    "imported",
    "error",
]
MAIN_METRICS = ("r2", "accuracy", "rmse", "log_loss")


def read_manifest(path: Path) -> dict[str, Any]:
    """The run folder's checked manifest; RunFileError naming the problem when it is missing or invalid."""
    where = f"run {path.name}"
    try:
        data = (path / MANIFEST).read_bytes()
    except FileNotFoundError:
        raise RunFileError(f"{where}: {MANIFEST} is missing; the folder is not a complete run.") from None
    except OSError as exc:
        raise RunFileError(f"{where}: {MANIFEST} cannot be read ({exc}).") from None
    return check_manifest(load_json(MANIFEST, data, where), where)


def summary_row(root: Path, run_id: str) -> dict[str, Any]:
    """The listing row of one run folder, from its manifest and small JSON members (weights are not read); a
    damaged run gets its problem in ``error``."""
    path = root / run_id
    row: dict[str, Any] = dict.fromkeys(LIST_COLUMNS)
    row["run_id"] = run_id
    where = f"run {run_id}"
    try:
        row["created"] = time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime(path.stat().st_mtime))
        manifest = read_manifest(path)
        row.update(
            name=manifest.get("name", ""),
            notes=manifest.get("notes", ""),
            created=manifest.get("created") or row["created"],
            imported=manifest.get("imported") or None,
        )
        small: dict[str, bytes] = {}
        for member, entry in manifest["files"].items():
            file = path / member
            if not file.is_file() or file.stat().st_size != entry["size"]:
                raise RunFileError(f"member {member} is missing or has the wrong size")
            if member.endswith(".json"):
                small[member] = file.read_bytes()
        verify_members({"files": {m: manifest["files"][m] for m in small}}, small, where)
        config = codec.decode_config(small, where)
        meta = load_json("dataset.json", small["dataset.json"], where)
        stored = load_json("metrics.json", small["metrics.json"], where)
        if not isinstance(stored, dict) or not isinstance(stored.get("metrics", {}), dict):
            raise RunFileError(f"{where}: metrics.json must be an object with a 'metrics' table")
        metrics = stored.get("metrics") or {}
        metric = next((m for m in MAIN_METRICS if m in metrics), None)
        m = config.model
        row.update(
            dataset=config.data.name,
            task=meta.get("task") if isinstance(meta, dict) else None,
            gate="none (standard)" if m.kind == "standard" else m.gate,
            expert=m.expert,
            n_experts=1 if m.kind == "standard" else m.n_experts,
            metric=metric,
            value=metrics.get(metric) if metric else None,
            epochs=stored.get("epochs_run"),
            params=stored.get("params"),
            device=stored.get("device"),
            stopped_reason=stored.get("stopped_reason"),
        )
    except (KamoeError, OSError, ValueError, TypeError, AttributeError) as exc:
        row["error"] = str(exc) or type(exc).__name__
    return row
