"""The results CSV of a sweep, written as runs finish and read back to resume.

Every finished run's row is written at once: the whole file is rewritten to a temporary file and renamed over the
old one, so a driver killed at any moment leaves the previous complete file, never a torn row. Each row carries a
``run_key`` (a hash of its full configuration, seed included); re-running the same sweep skips runs whose key is
already in the file with a result. Rows that say ``error`` (a task that failed) are run again; rows of other
settings already in the file are kept, after this sweep's rows.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pandas as pd

from kamoe_viz.errors import ValidationError

RUN_KEY = "run_key"
RUN_KEY_LENGTH = 16


def run_key(variant: str, labels: dict[str, Any], config: dict[str, Any]) -> str:
    """Stable id of one run: its variant, labels and whole configuration (data, model, training, seed)."""
    text = json.dumps({"variant": variant, "labels": labels, "config": config}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:RUN_KEY_LENGTH]


def check_path(path: str | Path, field: str = "--out") -> Path:
    """Refuse an output file that cannot be written, before any run trains (a probe file is written and removed
    next to it, the same way :meth:`ResultsFile.add` writes)."""
    out = Path(path)
    if out.exists() and out.is_dir():
        raise ValidationError(field, str(path), "must be a file path, not a folder")
    if not out.parent.exists():
        raise ValidationError(field, str(path), f"folder {str(out.parent)!r} does not exist")
    if not out.parent.is_dir():
        raise ValidationError(field, str(path), f"{str(out.parent)!r} is a file, not a folder")
    probe = out.with_name(out.name + ".tmp")
    try:
        probe.write_text("", encoding="utf-8")
        probe.unlink()
    except OSError as err:
        raise ValidationError(field, str(path), f"cannot be written here ({err.strerror or err})") from None
    return out


def check_folder(path: str | Path, field: str = "--out-dir") -> Path:
    """Create an output folder (with its parents) and check a file can be written in it, before any run."""
    out = Path(path)
    if out.exists() and not out.is_dir():
        raise ValidationError(field, str(path), "is a file; give a folder")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise ValidationError(field, str(path), f"cannot be created ({err.strerror or err})") from None
    check_path(out / "write-check", field)
    return out


def _valid_key(value: Any) -> bool:
    return isinstance(value, str) and len(value) == RUN_KEY_LENGTH and all(c in "0123456789abcdef" for c in value)


class ResultsFile:
    """Rows by run key, in the order first written; :meth:`add` writes the file again at once."""

    def __init__(self, path: str | Path) -> None:
        self.path = check_path(path)
        self.rows: dict[str, dict[str, Any]] = {}
        self.foreign = 0  # rows of other settings kept in the file (set by write_table)
        self.resumed = 0  # runs of the sweep taken from the file instead of trained (set by the sweep)
        if self.path.exists() and self.path.stat().st_size:
            try:
                old = pd.read_csv(self.path)
            except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
                raise ValidationError(
                    "--out",
                    str(path),
                    f"is not a results CSV this tool wrote ({err}); choose another file or remove it",
                ) from None
            if RUN_KEY not in old.columns:
                raise ValidationError(
                    "--out",
                    str(path),
                    f"has no {RUN_KEY} column, so it cannot be resumed; choose another file or remove it",
                )
            for rec in old.to_dict("records"):
                if _valid_key(rec.get(RUN_KEY)):
                    if isinstance(rec.get("message"), float):  # an empty message reads back as NaN
                        rec["message"] = ""
                    self.rows[rec[RUN_KEY]] = rec

    def finished(self) -> dict[str, dict[str, Any]]:
        """Rows with a result (diverged runs included; error rows are not finished)."""
        return {k: r for k, r in self.rows.items() if r.get("stopped_reason") != "error"}

    def add(self, row: dict[str, Any]) -> None:
        self.rows[row[RUN_KEY]] = dict(row)
        self._write(pd.DataFrame(list(self.rows.values())))

    def write_table(self, table: pd.DataFrame) -> None:
        """The sweep's final table in plan order, then any rows of other settings the file held before."""
        keys = set(table[RUN_KEY]) if RUN_KEY in table.columns else set()
        others = [r for k, r in self.rows.items() if k not in keys]
        self.foreign = len(others)
        frame = pd.concat([table, pd.DataFrame(others)], ignore_index=True) if others else table
        self._write(frame)

    def _write(self, frame: pd.DataFrame) -> None:
        cols = [c for c in frame.columns if c != RUN_KEY] + ([RUN_KEY] if RUN_KEY in frame.columns else [])
        tmp = self.path.with_name(self.path.name + ".tmp")
        frame[cols].to_csv(tmp, index=False)
        tmp.replace(self.path)


__all__ = ["RUN_KEY", "ResultsFile", "check_folder", "check_path", "run_key"]
