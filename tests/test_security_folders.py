"""The runs folder belongs to whoever starts the server: a visitor cannot choose it, and Delete removes only what
the run store wrote (a folder with a valid run marker and nothing but run members)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from test_runs import entries, make_run

from kamoe_viz import serving
from kamoe_viz.errors import RunFileError
from kamoe_viz.runstore import RunStore


def test_a_folder_without_a_run_marker_is_not_listed_and_not_deleted(tmp_path: Path) -> None:
    store = RunStore(tmp_path)
    precious = tmp_path / "home_of_someone"
    (precious / "deep").mkdir(parents=True)
    (precious / "deep" / "thesis.tex").write_text("years of work")
    assert "home_of_someone" not in list(store.list_runs()["run_id"])
    with pytest.raises(RunFileError):
        store.delete("home_of_someone")
    assert (precious / "deep" / "thesis.tex").read_text() == "years of work"


def test_a_folder_with_a_broken_marker_is_listed_but_left_alone(tmp_path: Path) -> None:
    store = RunStore(tmp_path)
    fake = tmp_path / "20200101-000000-abcdef"
    fake.mkdir()
    (fake / "format.json").write_text("{not json")
    (fake / "data.txt").write_text("keep me")
    assert "format.json" in store.list_runs().set_index("run_id").loc[fake.name, "error"]
    with pytest.raises(RunFileError, match="no valid run marker"):
        store.delete(fake.name)
    assert (fake / "data.txt").exists()


def test_a_run_holding_a_file_the_store_did_not_write_is_refused(tmp_path: Path) -> None:
    store = RunStore(tmp_path)
    run_id = store.save(make_run())
    (tmp_path / run_id / "mine.txt").write_text("mine")
    with pytest.raises(RunFileError, match="did not write"):
        store.delete(run_id)
    assert (tmp_path / run_id / "mine.txt").exists() and (tmp_path / run_id / "format.json").exists()
    (tmp_path / run_id / "mine.txt").unlink()
    store.delete(run_id)
    assert entries(tmp_path) == []


def test_a_trash_folder_keeps_what_the_store_did_not_write(tmp_path: Path) -> None:
    trash = tmp_path / ".trash-1-00"
    trash.mkdir()
    (trash / "config.json").write_text("{}")
    (trash / "someone.txt").write_text("x")
    RunStore(tmp_path)
    assert sorted(os.listdir(trash)) == ["someone.txt"]


def test_a_manifest_copy_left_by_a_killed_rename_is_removed(tmp_path: Path) -> None:
    store = RunStore(tmp_path)
    run_id = store.save(make_run())
    stale = tmp_path / run_id / "format.json.tmp-999999999-deadbeef"  # a process that cannot exist
    stale.write_text("half")
    RunStore(tmp_path)
    assert not stale.exists()
    assert store.load(run_id).run_id == run_id


def test_server_flags_choose_the_runs_folder_and_limits() -> None:
    env: dict[str, str] = {serving.ENV_RUNS_DIR: "/from/env"}
    unknown = serving.apply_args(["--runs-dir", "/from/flag", "--max-params", "5", "--debug", "--other"], env)
    assert serving.runs_dir(env) == Path("/from/flag") and env[serving.ENV_MAX_PARAMS] == "5"
    assert serving.debug(env) and unknown == ["--other"]
    assert serving.runs_dir({}) == Path("runs") and not serving.debug({serving.ENV_DEBUG: "0"})


def test_pages_name_the_runs_folder_the_server_really_uses(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert serving.runs_dir_label({}) == "runs"
    assert serving.runs_dir_label({serving.ENV_RUNS_DIR: str(tmp_path / "a" / "b")}) == str(Path("a") / "b")
    elsewhere = tmp_path.parent / "elsewhere-runs"
    assert serving.runs_dir_label({serving.ENV_RUNS_DIR: str(elsewhere)}) == "elsewhere-runs"  # never the path


@pytest.mark.parametrize("content", [b"[1, 2]", b'{"metrics": [1]}', b'{"metrics": "x"}'])
def test_a_malformed_metrics_member_is_listed_with_a_plain_message(tmp_path: Path, content: bytes) -> None:
    import json

    from kamoe_viz.runstore.fileformat import sha256

    store = RunStore(tmp_path)
    run_id = store.save(make_run())
    (tmp_path / run_id / "metrics.json").write_bytes(content)
    manifest = json.loads((tmp_path / run_id / "format.json").read_text())
    manifest["files"]["metrics.json"] = {"sha256": sha256(content), "size": len(content)}
    (tmp_path / run_id / "format.json").write_text(json.dumps(manifest))
    error = store.list_runs().set_index("run_id").loc[run_id, "error"]
    assert "metrics.json must be an object" in error and "attribute" not in error
