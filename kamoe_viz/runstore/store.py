"""RunStore: saved runs on disk, one folder per run, written atomically, read back without trusting them.

Layout: ``<root>/<run_id>/`` holding the members of :mod:`kamoe_viz.runstore.fileformat`. A save writes every member
into ``<root>/.tmp-<pid>-<token>/`` (each file fsynced, the manifest last) and renames that folder into place in one
step, so a crash leaves either the complete run or no run, never half of one; leftover temp folders of dead
processes are removed when a store is next opened. Deletion renames the folder away before removing it.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from kamoe_viz import __version__
from kamoe_viz.errors import RunFileError, ValidationError
from kamoe_viz.runstore import codec, portable
from kamoe_viz.runstore.fileformat import (
    ALL_MEMBERS,
    DEFAULT_MAX_RUN_BYTES,
    MANIFEST,
    MAX_NAME_CHARS,
    MAX_NOTES_CHARS,
    build_manifest,
    check_manifest,
    check_run_id,
    clean_text,
    dump_json,
    load_json,
    migrate,
    new_run_id,
    read_zip,
    sha256,
    utc_now_text,
    verify_members,
    write_zip,
)
from kamoe_viz.runstore.folders import (
    TMP_PREFIX,
    TRASH_PREFIX,
    fsync_dir,
    is_member_file,
    pid_alive,
    remove_known,
    stale_manifest_copies,
)
from kamoe_viz.runstore.folders import write_file as _write_file  # tests replace it to simulate a full disk
from kamoe_viz.runstore.listing import LIST_COLUMNS, read_manifest, summary_row

if TYPE_CHECKING:
    from kamoe_viz.training.results import TrainedRun

ENV_ROOT = "KAMOE_RUNS_DIR"
_RUN_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,79}$")

# Called with each member's name right after it is written during a save; tests use it to crash a save midway.
_write_hook: Callable[[str], None] | None = None


def display_filename(filename: Any) -> str:
    """A user's file name, safe to show in a message: base name only, printable, bounded."""
    text = os.path.basename(str(filename or "upload").replace("\\", "/"))
    text = re.sub(r"[^\w.\- ()]", "_", text)[:80]
    return text or "upload"


class RunStore:
    """Saved runs under ``root`` (argument, else env ``KAMOE_RUNS_DIR``, else ``./runs``)."""

    def __init__(
        self,
        root: str | os.PathLike | None = None,
        *,
        max_run_bytes: int = DEFAULT_MAX_RUN_BYTES,
        max_dataset_bytes: int = codec.DEFAULT_MAX_DATASET_BYTES,
        stale_seconds: float = 24 * 3600,
    ) -> None:
        root = root if root is not None else (os.environ.get(ENV_ROOT) or "runs")
        self.root = Path(root).expanduser().resolve()
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise RunFileError(
                f"runs folder {self.root} cannot be created ({exc}); set {ENV_ROOT} to a writable folder."
            ) from None
        self.max_run_bytes = int(max_run_bytes)
        self.max_dataset_bytes = int(max_dataset_bytes)
        self.stale_seconds = stale_seconds
        self.cleanup()

    # ----- paths ----------------------------------------------------------------------------------------------------
    def _run_dir(self, run_id: Any) -> Path:
        run_id = check_run_id(run_id)
        path = (self.root / run_id).resolve()
        if path.parent != self.root:
            raise ValidationError("run_id", run_id, "must name a folder directly inside the runs folder")
        return path

    def _existing(self, run_id: Any) -> Path:
        path = self._run_dir(run_id)
        if not path.is_dir():
            raise RunFileError(f"run {run_id!r} does not exist in {self.root}.")
        return path

    def run_ids(self) -> list[str]:
        """Folders with a run marker (``format.json``), newest id first; any other folder is not a run and is
        neither listed nor offered for deletion."""
        try:
            names = [p.name for p in self.root.iterdir() if p.is_dir() and (p / MANIFEST).is_file()]
        except FileNotFoundError:  # the folder was removed after the store was opened
            return []
        return sorted((n for n in names if _RUN_ID.match(n)), reverse=True)

    def __contains__(self, run_id: object) -> bool:
        try:
            return self._run_dir(run_id).is_dir()
        except ValidationError:
            return False

    def cleanup(self) -> list[str]:
        """Remove temp folders of dead (or long-gone) saves and leftovers of interrupted deletes."""
        removed: list[str] = []
        now = time.time()
        try:
            listing = list(self.root.iterdir())
        except OSError:
            return removed
        for entry in listing:
            name = entry.name
            if name.startswith(TRASH_PREFIX):
                if remove_known(entry):
                    removed.append(name)
            elif _RUN_ID.match(name) and entry.is_dir():
                removed += stale_manifest_copies(entry, now, self.stale_seconds)
            elif name.startswith(TMP_PREFIX):
                match = re.match(r"^\.tmp-(\d+)-", name)
                try:
                    old = now - entry.stat().st_mtime > self.stale_seconds
                except OSError:
                    continue
                if old or not match or not pid_alive(int(match.group(1))):
                    shutil.rmtree(entry, ignore_errors=True)
                    removed.append(name)
        return removed

    # ----- writing --------------------------------------------------------------------------------------------------
    def _commit(self, members: dict[str, bytes], manifest_fields: dict[str, Any], run_id: str | None) -> str:
        """Write members to a temp folder, then rename it to a fresh run id (retrying on a clash)."""
        tmp = self.root / f"{TMP_PREFIX}{os.getpid()}-{secrets.token_hex(4)}"
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            tmp.mkdir()
        except OSError as exc:
            raise RunFileError(
                f"the run could not be saved in {self.root} ({exc}); no saved run was changed."
            ) from None
        try:
            for member in ALL_MEMBERS:
                if member in members:
                    _write_file(tmp / member, members[member])
                    if _write_hook is not None:
                        _write_hook(member)
            for attempt in range(20):
                candidate = run_id if (run_id and attempt == 0) else new_run_id()
                target = self._run_dir(candidate)
                if target.exists():
                    continue
                manifest = build_manifest(members, run_id=candidate, library_version=__version__, **manifest_fields)
                manifest_path = tmp / MANIFEST
                if manifest_path.exists():
                    manifest_path.unlink()
                _write_file(manifest_path, dump_json(manifest))
                if _write_hook is not None:
                    _write_hook(MANIFEST)
                fsync_dir(tmp)
                try:
                    os.rename(tmp, target)  # atomic; fails if another save took the id meanwhile
                except OSError:
                    if target.exists():
                        continue
                    raise
                fsync_dir(self.root)
                return candidate
            raise RunFileError(f"could not find a free run id in {self.root}.")
        except OSError as exc:  # disk full, permissions, folder removed: the half-written copy goes, nothing else
            shutil.rmtree(tmp, ignore_errors=True)
            raise RunFileError(
                f"the run could not be saved in {self.root} ({exc}); no saved run was changed."
            ) from None
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise

    def save(self, run: TrainedRun, name: str | None = None, notes: str | None = None, csv: bytes | None = None) -> str:
        """Store a TrainedRun; returns its new run id (also set on ``run.run_id`` when that was None).

        ``csv``: the raw CSV of an uploaded dataset, kept in the run so it reloads without the upload. When not
        given and the run's config points at a CSV file (``data.csv_path``), that file is copied.
        """
        name = clean_text("run name", name, MAX_NAME_CHARS, single_line=True)
        notes = clean_text("run notes", notes, MAX_NOTES_CHARS, single_line=False)
        if csv is None:
            csv = self._csv_of(run)
        try:
            members = codec.encode(run, csv, self.max_dataset_bytes)
        except (AttributeError, TypeError, ValueError) as exc:
            raise ValidationError(
                "run",
                type(run).__name__,
                f"must be a kamoe_viz.training.TrainedRun with config, dataset, model and result ({exc})",
            ) from None
        total = sum(len(v) for v in members.values())
        if total > self.max_run_bytes:
            raise RunFileError(f"this run needs {total} bytes, more than the {self.max_run_bytes} allowed per run.")
        run_id = self._commit(
            members, {"name": name or self._default_name(run), "notes": notes, "created": utc_now_text()}, None
        )
        if getattr(run, "run_id", "x") is None:
            run.run_id = run_id
        return run_id

    def _csv_of(self, run: TrainedRun) -> bytes | None:
        data = getattr(getattr(run, "config", None), "data", None)
        candidates = [getattr(data, "csv_path", None), (getattr(data, "options", None) or {}).get("csv_path")]
        for path in candidates:
            if isinstance(path, str) and path and os.path.isfile(path):
                if os.path.getsize(path) > self.max_run_bytes // 2:
                    return None
                with open(path, "rb") as handle:
                    return handle.read()
        return None

    @staticmethod
    def _default_name(run: TrainedRun) -> str:
        try:
            m = run.config.model
            gate = "standard" if m.kind == "standard" else f"{m.gate.upper() if m.gate != 'linear' else m.gate} gate"
            return f"{run.config.data.name}: {gate}, {m.n_experts} {m.expert.upper()} experts"[:MAX_NAME_CHARS]
        except AttributeError:
            return ""

    def rename(self, run_id: str, name: str | None = None, notes: str | None = None) -> None:
        """Change a run's name and/or notes (None leaves that field as it is); one atomic replace of the manifest."""
        path = self._existing(run_id)
        manifest = read_manifest(path)
        if name is not None:
            manifest["name"] = clean_text("run name", name, MAX_NAME_CHARS, single_line=True)
        if notes is not None:
            manifest["notes"] = clean_text("run notes", notes, MAX_NOTES_CHARS, single_line=False)
        tmp = path / f"{MANIFEST}{TMP_PREFIX}{os.getpid()}-{secrets.token_hex(4)}"
        try:
            _write_file(tmp, dump_json(manifest))
            os.replace(tmp, path / MANIFEST)
        finally:
            if tmp.exists():
                tmp.unlink()
        fsync_dir(path)

    def delete(self, run_id: str) -> None:
        """Remove a run: only a folder with a valid run marker, and only the members the store writes.

        Anything else (a folder that is not a run, a file the store did not write) is refused and left as it is.
        """
        path = self._existing(run_id)
        try:
            read_manifest(path)
        except RunFileError:
            raise RunFileError(
                f"folder {run_id} has no valid run marker ({MANIFEST}), so it is not a run saved by "
                "KAMoE Explorer; it was left as it is (remove it by hand if you are sure)."
            ) from None
        foreign = sorted(p.name for p in path.iterdir() if not is_member_file(p))
        if foreign:
            raise RunFileError(
                f"run {run_id} also holds {len(foreign)} item(s) the run store did not write (e.g. "
                f"{foreign[0]!r}); it was left as it is (remove it by hand if you are sure)."
            )
        trash = self.root / f"{TRASH_PREFIX}{os.getpid()}-{secrets.token_hex(4)}"
        os.rename(path, trash)  # the run disappears from listings in one step
        fsync_dir(self.root)
        remove_known(trash)

    # ----- reading --------------------------------------------------------------------------------------------------
    def _read_members(self, path: Path) -> tuple[dict[str, Any], dict[str, bytes]]:
        where = f"run {path.name}"
        manifest = read_manifest(path)
        members: dict[str, bytes] = {}
        for member in manifest["files"]:
            file = path / member
            try:
                if not file.is_file():
                    raise RunFileError(f"{where}: member {member} is missing.")
                if file.stat().st_size > self.max_run_bytes:
                    raise RunFileError(
                        f"{where}: member {member} is larger than the {self.max_run_bytes} bytes allowed."
                    )
                members[member] = file.read_bytes()
            except OSError as exc:
                raise RunFileError(f"{where}: member {member} cannot be read ({exc}).") from None
        verify_members(manifest, members, where)
        return migrate(manifest, members)

    def info(self, run_id: str) -> dict[str, Any]:
        """The run's manifest: name, notes, created, versions, member hashes."""
        return read_manifest(self._existing(run_id))

    def load(self, run_id: str) -> TrainedRun:
        """The stored TrainedRun (model on CPU in eval mode) with its history and metrics as a TrainResult."""
        path = self._existing(run_id)
        _, members = self._read_members(path)
        csv_path = path / "data.csv" if "data.csv" in members else None
        return codec.decode(members, f"run {run_id}", run_id=run_id, csv_path=csv_path)

    def list_runs(self) -> pd.DataFrame:
        """One row per run, newest first; a damaged run gets a row with its problem in ``error``."""
        rows = [summary_row(self.root, run_id) for run_id in self.run_ids()]
        frame = pd.DataFrame(rows, columns=LIST_COLUMNS)
        if len(frame):
            frame = frame.sort_values(["created", "run_id"], ascending=False, kind="stable").reset_index(drop=True)
        return frame

    # ----- files in and out -----------------------------------------------------------------------------------------
    def export_bytes(self, run_id: str) -> bytes:
        """The run as one .zip (members under ``<run_id>/``), after checking it is intact."""
        path = self._existing(run_id)
        manifest, members = self._read_members(path)
        members = dict(members)
        members["config.json"] = portable.without_paths(members["config.json"], f"run {path.name}")
        manifest = dict(
            manifest,
            files={
                **manifest["files"],
                "config.json": {"sha256": sha256(members["config.json"]), "size": len(members["config.json"])},
            },
        )
        members[MANIFEST] = dump_json(manifest)
        return write_zip(path.name, members)

    def export_filename(self, run_id: str) -> str:
        check_run_id(run_id)
        return f"kamoe-run-{run_id}.zip"

    def find_same(self, members: dict[str, bytes]) -> str | None:
        """The id of a stored run with the same settings, weights and results as ``members``, if any."""
        keys = ("config.json", "weights.safetensors", "metrics.json", "history.csv")
        wanted = {m: sha256(members[m]) for m in keys if m in members}
        for run_id in self.run_ids():
            try:
                files = read_manifest(self.root / run_id)["files"]
            except RunFileError:
                continue
            if all(files.get(m, {}).get("sha256") == h for m, h in wanted.items()):
                return run_id
        return None

    def import_bytes(self, data: bytes, filename: str = "upload.zip") -> str:
        """Check a run file completely, then store it; returns the new run id, or the id of the stored run it is
        identical to (nothing is written then). Nothing is written on any error."""
        where = display_filename(filename)
        members = read_zip(data, where, self.max_run_bytes)
        manifest = check_manifest(load_json(MANIFEST, members.pop(MANIFEST), where), where)
        verify_members(manifest, members, where)
        manifest, members = migrate(manifest, members)
        name = manifest.get("name", "")
        try:
            name = clean_text("run name", name, MAX_NAME_CHARS, single_line=True)
            notes = clean_text("run notes", manifest.get("notes", ""), MAX_NOTES_CHARS, single_line=False)
        except ValidationError as exc:
            raise RunFileError(f"{where}: {MANIFEST} {exc}") from None
        portable.check_self_contained(members, where)
        codec.check_importable(members, where)
        same = self.find_same(members)
        if same is not None:  # the same run again: no second copy in the listing
            return same
        wanted = manifest.get("run_id")
        try:
            wanted = check_run_id(wanted)
        except ValidationError:
            wanted = None
        stored_created = manifest.get("created")
        created = stored_created if isinstance(stored_created, str) else utc_now_text()
        return self._commit(
            members, {"name": name, "notes": notes, "created": created[:40], "imported": utc_now_text()}, wanted
        )
