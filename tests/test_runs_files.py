"""Run files moving in and out: export/import round trip and every way a file can be damaged, foreign or hostile.

Each refused file must raise RunFileError with a message saying what is wrong, and leave the store untouched.
"""

from __future__ import annotations

import io
import json
import pickle
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from test_runs import entries, make_run, predictions

from kamoe_viz.errors import RunFileError
from kamoe_viz.runstore import MIGRATIONS, RunStore
from kamoe_viz.runstore.fileformat import sha256


@pytest.fixture()
def exported(tmp_path: Path) -> tuple[RunStore, str, bytes]:
    source = RunStore(tmp_path / "source")
    run_id = source.save(make_run(), name="shared run", notes="from a colleague")
    return source, run_id, source.export_bytes(run_id)


@pytest.fixture()
def target(tmp_path: Path) -> RunStore:
    store = RunStore(tmp_path / "target")
    store.save(make_run(seed=1), name="already here")
    return store


def members_of(data: bytes) -> dict[str, bytes]:
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        return {info.filename: zf.read(info) for info in zf.infolist()}


def rezip(data: bytes, change: Callable[[dict[str, bytes]], None], fix_hashes: bool = True) -> bytes:
    """Rebuild a run zip after ``change`` edits its members (name -> bytes); recompute the manifest's hashes the way
    a careful forger would, so the content checks (not just the hash) are what must catch it."""
    members = members_of(data)
    prefix = next(iter(members)).split("/")[0]
    plain = {name.split("/", 1)[1]: content for name, content in members.items()}
    change(plain)
    try:
        manifest = json.loads(plain["format.json"]) if fix_hashes else None
    except (KeyError, ValueError):
        manifest = None  # no manifest or a forged one that is not JSON: nothing to fix
    if isinstance(manifest, dict):
        manifest["files"] = {m: {"sha256": sha256(c), "size": len(c)} for m, c in plain.items() if m != "format.json"}
        plain["format.json"] = json.dumps(manifest).encode()
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, content in plain.items():
            zf.writestr(f"{prefix}/{name}", content)
    return buffer.getvalue()


def edit_json(member: str, edit: Callable[[dict], None]) -> Callable[[dict[str, bytes]], None]:
    def change(plain: dict[str, bytes]) -> None:
        value = json.loads(plain[member])
        edit(value)
        plain[member] = json.dumps(value).encode()

    return change


def refused(store: RunStore, data: bytes, match: str, filename: str = "run.zip") -> str:
    before = entries(store.root)
    listing = store.list_runs()
    with pytest.raises(RunFileError, match=match) as info:
        store.import_bytes(data, filename)
    assert entries(store.root) == before, "a refused import must not write anything"
    assert store.list_runs().equals(listing)
    return str(info.value)


# ----- round trip ----------------------------------------------------------------------------------------------------
def test_export_import_round_trip(exported: tuple[RunStore, str, bytes], target: RunStore) -> None:
    source, run_id, data = exported
    assert data[:2] == b"PK" and source.export_filename(run_id) == f"kamoe-run-{run_id}.zip"
    assert all(name.startswith(f"{run_id}/") for name in members_of(data))
    new_id = target.import_bytes(data, "kamoe-run.zip")
    assert new_id == run_id  # the id travels with the file when it is free
    loaded = target.load(new_id)
    np.testing.assert_array_equal(predictions(loaded), predictions(source.load(run_id)))
    info = target.info(new_id)
    assert (info["name"], info["notes"]) == ("shared run", "from a colleague")
    assert info["created"] == source.info(run_id)["created"]
    before = entries(target.root)
    again = target.import_bytes(data, "kamoe-run.zip")  # importing the same run again: no second copy
    assert again == new_id and len(target.list_runs()) == 2 and entries(target.root) == before
    assert target.list_runs()["error"].isna().all()
    listed = target.list_runs().set_index("run_id")["imported"]  # an imported copy says so, with when
    assert listed[new_id].startswith("20")
    assert source.list_runs().set_index("run_id")["imported"].isna().all()  # a run trained here does not


def test_export_refuses_a_damaged_run(exported: tuple[RunStore, str, bytes]) -> None:
    source, run_id, _ = exported
    weights = source.root / run_id / "weights.safetensors"
    weights.write_bytes(weights.read_bytes()[:-8] + b"\x00" * 8)
    with pytest.raises(RunFileError, match="weights.safetensors.*sha256"):
        source.export_bytes(run_id)


# ----- damaged or foreign files ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("cut", [0.1, 0.5, 0.9, 0.99])
def test_truncated_zip(exported: tuple[RunStore, str, bytes], target: RunStore, cut: float) -> None:
    data = exported[2]
    refused(target, data[: int(len(data) * cut)], "damaged|truncated|zip|empty")


def test_edited_member_without_new_hash(exported: tuple[RunStore, str, bytes], target: RunStore) -> None:
    def same_length(plain: dict[str, bytes]) -> None:
        plain["metrics.json"] = plain["metrics.json"].replace(b"0.75", b"0.99")  # a nicer score, same size

    refused(target, rezip(exported[2], same_length, fix_hashes=False), "metrics.json does not match its sha256")
    longer = rezip(exported[2], edit_json("metrics.json", lambda m: m["metrics"].update(r2=0.999)), fix_hashes=False)
    refused(target, longer, "metrics.json has .* bytes but format.json records")


def test_flipped_byte_inside_the_zip(exported: tuple[RunStore, str, bytes], target: RunStore) -> None:
    data = bytearray(exported[2])
    start = data.find(b"weights.safetensors") + 40  # inside the compressed weights
    data[start] ^= 0xFF
    refused(target, bytes(data), "damaged|sha256|cannot be read|CRC")


def test_tampered_config_value_is_named(exported: tuple[RunStore, str, bytes], target: RunStore) -> None:
    data = rezip(exported[2], edit_json("config.json", lambda c: c["model"].update(n_experts=0)))
    message = refused(target, data, "config.json is not a valid run configuration")
    assert "model.n_experts: got 0" in message and "from 1 to 16" in message
    data = rezip(exported[2], edit_json("config.json", lambda c: c["model"].update(gate="eval('1')")))
    assert "model.gate" in refused(target, data, "config.json")
    data = rezip(exported[2], edit_json("config.json", lambda c: c.update(extra={})))
    refused(target, data, "unknown section")


def test_mismatched_weights_shape(exported: tuple[RunStore, str, bytes], target: RunStore) -> None:
    data = rezip(exported[2], edit_json("config.json", lambda c: c["model"].update(expert_hidden=[5])))
    refused(target, data, r"weights.safetensors tensor .* has shape .* needs")
    data = rezip(exported[2], edit_json("config.json", lambda c: c["model"].update(gate="linear")))
    refused(target, data, "weights.safetensors does not fit the model built from config.json")


def test_weights_that_are_not_safetensors(exported: tuple[RunStore, str, bytes], target: RunStore) -> None:
    def torch_pickle(plain: dict[str, bytes]) -> None:
        buffer = io.BytesIO()
        torch.save({"x": torch.ones(2)}, buffer)
        plain["weights.safetensors"] = buffer.getvalue()

    refused(target, rezip(exported[2], torch_pickle), "weights.safetensors cannot be read")


def test_edited_dataset_is_caught(exported: tuple[RunStore, str, bytes], target: RunStore) -> None:
    def shuffle(plain: dict[str, bytes]) -> None:
        from safetensors.numpy import load, save

        arrays = load(plain["dataset.safetensors"])
        arrays["X_test"] = arrays["X_test"][::-1].copy()
        plain["dataset.safetensors"] = save(arrays)

    refused(target, rezip(exported[2], shuffle), "fingerprint")
    refused(target, rezip(exported[2], edit_json("dataset.json", lambda d: d.update(task="poetry"))), "task")


def test_format_versions(
    exported: tuple[RunStore, str, bytes], target: RunStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    newer = rezip(exported[2], edit_json("format.json", lambda m: m.update(format_version=7, library_version="9.0")))
    message = refused(target, newer, "format version 7")
    assert "9.0" in message and "up to 1" in message and "Upgrade" in message
    older = rezip(exported[2], edit_json("format.json", lambda m: m.update(format_version=0)))
    assert "older than any format" in refused(target, older, "format version 0")
    refused(
        target,
        rezip(exported[2], edit_json("format.json", lambda m: m.update(format="other-tool"))),
        "does not describe a KAMoE Explorer run",
    )
    # a registered migration makes the older file load
    seen = []

    def from_v0(manifest: dict, members: dict) -> tuple[dict, dict]:
        seen.append(sorted(members))
        return dict(manifest, format_version=1), members

    monkeypatch.setitem(MIGRATIONS, 0, from_v0)
    run_id = target.import_bytes(older, "old.zip")
    assert seen and target.load(run_id).run_id == run_id


def foreign_files() -> dict[str, bytes]:
    random_zip = io.BytesIO()
    with zipfile.ZipFile(random_zip, "w") as zf:
        zf.writestr("holiday/photo.jpg", b"\xff\xd8\xff" + b"0" * 100)
        zf.writestr("readme.txt", "hello")
    pt = io.BytesIO()
    torch.save({"weight": torch.zeros(3)}, pt)
    png = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4
    return {
        "random.zip": random_zip.getvalue(),
        "model.pt": pt.getvalue(),
        "state.pkl": pickle.dumps({"a": 1}),
        "old.pkl": pickle.dumps([1, 2], protocol=0),
        "image.zip": png,
        "empty.zip": b"",
        "text.zip": b"config = 1\n",
        "noise.zip": np.random.default_rng(0).bytes(5000),
    }


@pytest.mark.parametrize("filename", sorted(foreign_files()))
def test_foreign_files(target: RunStore, filename: str) -> None:
    message = refused(target, foreign_files()[filename], ".", filename=filename)
    assert filename in message  # the message names the file the user picked


def test_zip_without_manifest_or_with_extra_member(exported: tuple[RunStore, str, bytes], target: RunStore) -> None:
    refused(target, rezip(exported[2], lambda p: p.pop("format.json")), "no format.json")
    refused(target, rezip(exported[2], lambda p: p.pop("weights.safetensors")), "weights.safetensors")
    refused(target, rezip(exported[2], lambda p: p.update({"run.py": b"import os"})), "unexpected member")


@pytest.mark.parametrize(
    "evil",
    [
        "../escape.json",
        "/abs/config.json",
        "run/../../config.json",
        "C:/win/config.json",
        "a\\..\\config.json",
        "deep/er/config.json",
        "./config.json",
    ],
)
def test_member_paths_outside_the_run_are_refused(
    exported: tuple[RunStore, str, bytes], target: RunStore, tmp_path: Path, evil: str
) -> None:
    data = bytearray(exported[2])
    buffer = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(bytes(data))) as src, zipfile.ZipFile(buffer, "w") as dst:
        for info in src.infolist():
            dst.writestr(info.filename, src.read(info))
        dst.writestr(evil, b"{}")
    refused(target, buffer.getvalue(), "entry|unexpected|folder|nested")
    assert not (tmp_path / "escape.json").exists()


def test_zip_bomb_guard(exported: tuple[RunStore, str, bytes], tmp_path: Path) -> None:
    bomb = rezip(exported[2], lambda p: p.update({"data.csv": b"0" * 3_000_000}))
    assert len(bomb) < 100_000  # compresses to almost nothing
    small = RunStore(tmp_path / "small", max_run_bytes=1_000_000)
    refused(small, bomb, "exceed 1000000 bytes")
    refused(small, b"PK" + b"\x00" * 1_000_001, "larger than")


def test_duplicate_members(exported: tuple[RunStore, str, bytes], target: RunStore) -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(exported[2])) as src, zipfile.ZipFile(buffer, "w") as dst:
        for info in src.infolist():
            dst.writestr(info.filename, src.read(info))
        with pytest.warns(UserWarning):
            dst.writestr(src.infolist()[1].filename, b"{}")
    refused(target, buffer.getvalue(), "appears twice")


def test_hostile_manifest_text_is_refused(exported: tuple[RunStore, str, bytes], target: RunStore) -> None:
    refused(
        target,
        rezip(exported[2], edit_json("format.json", lambda m: m.update(name="a\x1b[31mred"))),
        "control characters",
    )
    refused(
        target,
        rezip(
            exported[2],
            edit_json("format.json", lambda m: m["files"].update({"../x": {"sha256": "0", "size": 1}})),
            fix_hashes=False,
        ),
        "unexpected member",
    )
    run_id = target.import_bytes(
        rezip(exported[2], edit_json("format.json", lambda m: m.update(run_id="../../x"))), "renamed.zip"
    )
    assert (target.root / run_id).is_dir() and ".." not in run_id
