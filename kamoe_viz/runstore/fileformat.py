"""The on-disk and in-zip layout of a saved run, and the checks every run file passes before it is trusted.

A run is a small set of named members (bytes). ``format.json`` is the manifest: format name and version, library
version, creation time, the user's name and notes, and the sha256 and size of every other member. Nothing here
imports torch; decoding the members into a model lives in :mod:`kamoe_viz.runstore.codec`.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import re
import secrets
import unicodedata
import zipfile
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from kamoe_viz.errors import RunFileError, ValidationError

FORMAT_NAME = "kamoe-run"
FORMAT_VERSION = 1
MANIFEST = "format.json"
REQUIRED_MEMBERS = ("config.json", "weights.safetensors", "metrics.json", "history.csv", "dataset.json")
OPTIONAL_MEMBERS = ("dataset.safetensors", "data.csv", "timeline.json", "timeline.safetensors")
ALL_MEMBERS = (MANIFEST, *REQUIRED_MEMBERS, *OPTIONAL_MEMBERS)

DEFAULT_MAX_RUN_BYTES = 512 * 1024**2  # total uncompressed size of one run (zip-bomb guard)
MAX_JSON_BYTES = 16 * 1024**2
MAX_NAME_CHARS = 120
MAX_NOTES_CHARS = 10_000

_MAGIC = {
    b"\x89PNG": "a PNG image",
    b"\xff\xd8\xff": "a JPEG image",
    b"%PDF": "a PDF document",
    b"\x1f\x8b": "a gzip file",
    b"\x93NUMPY": "a NumPy .npy file",
    b"\x89HDF": "an HDF5 file",
}
_RUN_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,79}$")


# ----- ids, names ---------------------------------------------------------------------------------------------------
def new_run_id(now: datetime | None = None) -> str:
    """``20250131-142501-3fa9c2``: sorts by creation time, unique thanks to the random suffix."""
    now = now or datetime.now(UTC)
    return now.strftime("%Y%m%d-%H%M%S-") + secrets.token_hex(3)


def check_run_id(run_id: Any) -> str:
    """A run id is a folder name under the runs root: letters, digits, '-' and '_' only (no dots, no separators)."""
    if not isinstance(run_id, str) or not _RUN_ID.match(run_id):
        raise ValidationError(
            "run_id",
            run_id,
            "must be 1 to 80 letters, digits, '-' or '_' (no dots, slashes or spaces), e.g. 20250131-142501-3fa9c2",
        )
    return run_id


def clean_text(field: str, value: Any, max_chars: int, *, single_line: bool) -> str:
    """A user-given run name or notes: printable text, trimmed, bounded; it is shown, never used as a path."""
    if value is None:
        return ""
    if not isinstance(value, str):
        raise ValidationError(field, value, "must be text")
    value = unicodedata.normalize("NFC", value).strip()
    allowed_ws = "" if single_line else "\n\t"
    bad = [c for c in value if (unicodedata.category(c).startswith("C") and c not in allowed_ws)]
    if bad:
        raise ValidationError(
            field, value, "must not contain control characters" + ("" if not single_line else " or line breaks")
        )
    if len(value) > max_chars:
        raise ValidationError(field, value, f"must be at most {max_chars} characters (got {len(value)})")
    return value


# ----- JSON ---------------------------------------------------------------------------------------------------------
def to_jsonable(value: Any) -> Any:
    """Plain JSON types; NaN/inf become None (strict JSON has no NaN), numpy scalars become Python numbers."""
    if isinstance(value, Mapping):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v) for v in value]
    if hasattr(value, "tolist") and not isinstance(value, (str, bytes)):  # numpy scalars and arrays
        return to_jsonable(value.tolist())
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return str(value)


def dump_json(value: Any) -> bytes:
    return json.dumps(to_jsonable(value), indent=2, sort_keys=True, allow_nan=False).encode("utf-8")


def _reject_constant(token: str) -> Any:
    raise ValueError(f"{token} is not valid JSON")


def load_json(member: str, data: bytes, where: str) -> Any:
    """Parse a JSON member (size-capped; NaN/Infinity refused) or raise RunFileError naming file and member."""
    if len(data) > MAX_JSON_BYTES:
        raise RunFileError(f"{where}: {member} has {len(data)} bytes, more than the {MAX_JSON_BYTES} allowed.")
    try:
        return json.loads(data.decode("utf-8"), parse_constant=_reject_constant)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise RunFileError(f"{where}: {member} is not valid UTF-8 JSON ({exc}).") from None


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# ----- manifest -----------------------------------------------------------------------------------------------------
def build_manifest(
    members: Mapping[str, bytes],
    *,
    run_id: str,
    name: str,
    notes: str,
    created: str,
    library_version: str,
    imported: str = "",
) -> dict[str, Any]:
    """``imported``: when this copy was imported from a run file (empty for a run trained here)."""
    extra = {"imported": imported} if imported else {}
    return {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "library_version": library_version,
        "created": created,
        "run_id": run_id,
        "name": name,
        "notes": notes,
        **extra,
        "files": {m: {"sha256": sha256(data), "size": len(data)} for m, data in sorted(members.items())},
    }


# Migrations from older format versions: version -> function(manifest, members) -> (manifest, members) of the next
# version. Version 1 is the first released format, so there is nothing to migrate yet; a later format bump adds
# its step here and keeps reading every run saved before it.
MIGRATIONS: dict[int, Any] = {}


def check_manifest(manifest: Any, where: str) -> dict[str, Any]:
    """Structure and version of a parsed ``format.json``; raises RunFileError saying what is wrong."""
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT_NAME:
        raise RunFileError(
            f'{where}: {MANIFEST} does not describe a KAMoE Explorer run (expected "format": "{FORMAT_NAME}").'
        )
    version = manifest.get("format_version")
    made_by = manifest.get("library_version", "unknown")
    if isinstance(version, bool) or not isinstance(version, int):
        raise RunFileError(f"{where}: format_version {version!r} is not an integer.")
    if version > FORMAT_VERSION:
        raise RunFileError(
            f"{where}: run file format version {version} was written by KAMoE Explorer {made_by}; this version "
            f"reads formats up to {FORMAT_VERSION}. Upgrade KAMoE Explorer to load it."
        )
    if version < FORMAT_VERSION and version not in MIGRATIONS:
        raise RunFileError(
            f"{where}: run file format version {version} (KAMoE Explorer {made_by}) is older than any format "
            f"this version can read (it migrates versions {sorted(MIGRATIONS) or 'none'} and reads "
            f"{FORMAT_VERSION}); retrain the run from its config.json."
        )
    files = manifest.get("files")
    if not isinstance(files, dict):
        raise RunFileError(f"{where}: {MANIFEST} has no 'files' table of member hashes.")
    for member, entry in files.items():
        if member not in ALL_MEMBERS or member == MANIFEST:
            raise RunFileError(
                f"{where}: {MANIFEST} lists unexpected member {member!r}; allowed: {', '.join(ALL_MEMBERS[1:])}."
            )
        if not (
            isinstance(entry, dict)
            and isinstance(entry.get("sha256"), str)
            and isinstance(entry.get("size"), int)
            and not isinstance(entry.get("size"), bool)
        ):
            raise RunFileError(f"{where}: {MANIFEST} entry for {member} needs a sha256 text and an integer size.")
    missing = [m for m in REQUIRED_MEMBERS if m not in files]
    if missing:
        raise RunFileError(f"{where}: {MANIFEST} does not list required member(s) {', '.join(missing)}.")
    for key in ("name", "notes", "created", "imported"):
        if not isinstance(manifest.get(key, ""), str):
            raise RunFileError(f"{where}: {MANIFEST} field {key!r} must be text.")
    return manifest


def migrate(manifest: dict[str, Any], members: dict[str, bytes]) -> tuple[dict[str, Any], dict[str, bytes]]:
    """Bring an older run up to :data:`FORMAT_VERSION`, one step at a time."""
    while manifest["format_version"] < FORMAT_VERSION:
        manifest, members = MIGRATIONS[manifest["format_version"]](manifest, members)
    return manifest, members


def verify_members(manifest: Mapping[str, Any], members: Mapping[str, bytes], where: str) -> None:
    """Every listed member present, of the listed size and sha256, and nothing unlisted."""
    files = manifest["files"]
    extra = sorted(set(members) - set(files) - {MANIFEST})
    if extra:
        raise RunFileError(f"{where}: member {extra[0]} is not listed in {MANIFEST}.")
    for member, entry in files.items():
        if member not in members:
            raise RunFileError(f"{where}: member {member} is missing (the file is incomplete).")
        data = members[member]
        if len(data) != entry["size"]:
            raise RunFileError(
                f"{where}: member {member} has {len(data)} bytes but {MANIFEST} records "
                f"{entry['size']}; the file was truncated or edited."
            )
        if sha256(data) != entry["sha256"]:
            raise RunFileError(
                f"{where}: member {member} does not match its sha256 in {MANIFEST}; the file was edited or damaged."
            )


# ----- zip ----------------------------------------------------------------------------------------------------------
def write_zip(prefix: str, members: Mapping[str, bytes]) -> bytes:
    """One zip with every member under ``prefix/``; the manifest first so a reader can see the format early."""
    buffer = io.BytesIO()
    order = [m for m in ALL_MEMBERS if m in members]
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for member in order:
            info = zipfile.ZipInfo(f"{prefix}/{member}", date_time=(2000, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            zf.writestr(info, members[member])
    return buffer.getvalue()


def _member_name(raw: str, where: str) -> tuple[str, str]:
    """Split a zip entry into (folder prefix, member); refuse anything that could point outside the run."""
    if "\\" in raw or raw.startswith("/") or re.match(r"^[A-Za-z]:", raw) or "\x00" in raw:
        raise RunFileError(
            f"{where}: entry {raw!r} has an absolute or Windows path; run files hold only plain member names."
        )
    parts = raw.rstrip("/").split("/")
    if any(p in ("", ".", "..") for p in parts):
        raise RunFileError(f"{where}: entry {raw!r} contains '.', '..' or an empty path part.")
    if len(parts) > 2:
        raise RunFileError(f"{where}: entry {raw!r} is nested too deep; expected <run>/<member>.")
    return ("/".join(parts[:-1]), parts[-1])


def read_zip(data: bytes, where: str, max_bytes: int = DEFAULT_MAX_RUN_BYTES) -> dict[str, bytes]:
    """Members of a run zip, checked for structure, names and size BEFORE anything is decoded or written."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise RunFileError(f"{where}: expected the file's bytes, got {type(data).__name__}.")
    data = bytes(data)
    if len(data) == 0:
        raise RunFileError(f"{where}: the file is empty.")
    if len(data) > max_bytes:
        raise RunFileError(f"{where}: {len(data)} bytes is larger than the {max_bytes} bytes allowed for a run.")
    if data[:1] == b"\x80":  # pickle protocol 2+ (old torch.save files too)
        raise RunFileError(
            f"{where}: this looks like a pickle or torch .pt file; KAMoE Explorer never unpickles "
            "files. Export runs from the Runs page (a .zip with safetensors weights)."
        )
    if not data.startswith(b"PK"):
        kind = next((f" (it looks like {name})" for magic, name in _MAGIC.items() if data.startswith(magic)), "")
        raise RunFileError(f"{where}: not a zip file{kind}. A run file is the .zip downloaded from the Runs page.")
    try:
        zf = zipfile.ZipFile(io.BytesIO(data))
        infos = zf.infolist()
    except Exception as exc:  # zipfile raises many types on damaged input (NotImplementedError, struct.error...)
        raise RunFileError(f"{where}: the zip is damaged or truncated ({type(exc).__name__}: {exc}).") from None
    prefixes: set[str] = set()
    chosen: dict[str, zipfile.ZipInfo] = {}
    total = 0
    for info in infos:
        prefix, member = _member_name(info.filename, where)
        if info.is_dir():
            if prefix:
                raise RunFileError(f"{where}: unexpected folder {info.filename!r}.")
            continue
        prefixes.add(prefix)
        if member.endswith((".pkl", ".pickle")):
            raise RunFileError(
                f"{where}: this is a PyTorch checkpoint or other pickle archive ({info.filename}); "
                "KAMoE Explorer never unpickles files. Use a run .zip exported from the Runs page."
            )
        if member not in ALL_MEMBERS:
            raise RunFileError(
                f"{where}: unexpected member {info.filename!r}; a run holds only "
                f"{', '.join(ALL_MEMBERS)}. This is not a KAMoE Explorer run file."
            )
        if member in chosen:
            raise RunFileError(f"{where}: member {member} appears twice.")
        if info.flag_bits & 0x1:
            raise RunFileError(f"{where}: member {member} is encrypted; run files are never encrypted.")
        total += info.file_size
        if total > max_bytes:
            raise RunFileError(
                f"{where}: the unpacked run would exceed {max_bytes} bytes; refused (zip bomb "
                "guard, configurable with RunStore(max_run_bytes=...))."
            )
        chosen[member] = info
    if len(prefixes) > 1:
        raise RunFileError(
            f"{where}: members sit in several folders ({', '.join(sorted(prefixes))}); a run file holds one run."
        )
    if MANIFEST not in chosen:
        raise RunFileError(f"{where}: no {MANIFEST} inside; this is not a KAMoE Explorer run file.")
    members: dict[str, bytes] = {}
    for member, info in chosen.items():
        try:
            with zf.open(info) as handle:
                content = handle.read(info.file_size + 1)
        except Exception as exc:  # bad CRC, zlib errors, unsupported compression, damaged headers
            raise RunFileError(
                f"{where}: member {member} cannot be read ({type(exc).__name__}: {exc}); the file is damaged."
            ) from None
        if len(content) != info.file_size:
            raise RunFileError(f"{where}: member {member} does not have its declared size; the file is damaged.")
        members[member] = content
    return members


def utc_now_text() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")
