"""Files and folders of the run store on disk: fsync, exclusive writes, and removal of only what the store wrote."""

from __future__ import annotations

import os
import re
from pathlib import Path

from kamoe_viz.runstore.fileformat import ALL_MEMBERS, MANIFEST

TMP_PREFIX = ".tmp-"
TRASH_PREFIX = ".trash-"


def fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # platforms without directory handles
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_file(path: Path, data: bytes) -> None:
    with open(path, "xb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True
    return True


def is_member_file(path: Path) -> bool:
    """A file the store writes inside a run folder: a member, or a manifest copy of an interrupted rename."""
    name = path.name
    return (
        (name in ALL_MEMBERS or name.startswith(f"{MANIFEST}{TMP_PREFIX}")) and path.is_file() and not path.is_symlink()
    )


def remove_known(folder: Path) -> bool:
    """Remove the store's own files from ``folder``, then the folder if that left it empty."""
    try:
        for entry in folder.iterdir():
            if is_member_file(entry):
                entry.unlink()
        folder.rmdir()
        return True
    except OSError:
        return False


def stale_manifest_copies(folder: Path, now: float, stale_seconds: float) -> list[str]:
    """``format.json.tmp-<pid>-<token>`` left by a rename killed before its replace: removed once its process is
    gone (or it is older than ``stale_seconds``)."""
    removed: list[str] = []
    try:
        entries = [e for e in folder.iterdir() if e.name.startswith(f"{MANIFEST}{TMP_PREFIX}")]
    except OSError:
        return removed
    for entry in entries:
        match = re.match(rf"^{re.escape(MANIFEST)}\.tmp-(\d+)-", entry.name)
        try:
            old = now - entry.stat().st_mtime > stale_seconds
            if old or not match or not pid_alive(int(match.group(1))):
                entry.unlink()
                removed.append(f"{folder.name}/{entry.name}")
        except OSError:
            continue
    return removed
