"""RunStore on disk: save/load round trip, listing, rename, delete, root selection, stale temp folders, paths."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from kamoe_viz.config import DataConfig, ModelConfig, RunConfig, TrainConfig
from kamoe_viz.data.base import Dataset
from kamoe_viz.errors import RunFileError, ValidationError
from kamoe_viz.nn import build_model
from kamoe_viz.runstore import LIST_COLUMNS, RunStore


# ----- tiny runs, shared with test_runs_files.py and the kill-during-save subprocess ----------------------------------
def make_dataset(task: str = "regression", n: int = 30, features: int = 3, seed: int = 0) -> Dataset:
    rng = np.random.default_rng(seed)

    def split(rows: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        X = rng.normal(size=(rows, features)).astype(np.float32)
        if task == "classification":
            y = (X[:, 0] > 0).astype(np.int64)
        else:
            y = (X[:, :1] * 2 + 0.1).astype(np.float32)
        return X, y, (X[:, 1] > 0).astype(np.int64)

    (Xtr, ytr, rtr), (Xva, yva, rva), (Xte, yte, rte) = split(n), split(n // 3), split(n // 3)
    return Dataset(
        name="tiny",
        task=task,
        feature_names=[f"f{i}" for i in range(features)],
        target_name="t",
        X_train=Xtr,
        y_train=ytr,
        X_val=Xva,
        y_val=yva,
        X_test=Xte,
        y_test=yte,
        description="tiny test set",
        class_names=["no", "yes"] if task == "classification" else None,
        regimes_train=rtr,
        regimes_val=rva,
        regimes_test=rte,
        regime_names=["low", "high"],
        x_mean=np.zeros(features, np.float32),
        x_std=np.ones(features, np.float32),
        y_mean=0.5,
        y_std=2.0,
        source="generated in tests",
        options={"noise": 0.1},
    )


def make_run(
    task: str = "regression",
    gate: str = "grkan",
    expert: str = "kan",
    hidden: tuple[int, ...] = (4,),
    n_experts: int = 2,
    seed: int = 0,
):
    from kamoe_viz.training import TrainedRun, TrainResult

    dataset = make_dataset(task, seed=seed)
    config = RunConfig(
        DataConfig(name="regimes", options={"noise": 0.1}),
        ModelConfig(gate=gate, expert=expert, expert_hidden=hidden, n_experts=n_experts),
        TrainConfig(epochs=3, device="cpu"),
    ).validate()
    torch.manual_seed(seed)
    model = build_model(config.model, dataset).eval()
    history = pd.DataFrame(
        {
            "epoch": [1, 2, 3],
            "train_loss": [1.0, 0.5, 0.25],
            "val_loss": [1.1, 0.6, float("nan")],
            "lr": [1e-3] * 3,
            "seconds": [0.1, 0.2, 0.3],
        }
    )
    metrics = {"r2": 0.75, "rmse": 0.5, "val_r2": 0.7} if task == "regression" else {"accuracy": 0.9, "log_loss": 0.3}
    result = TrainResult(
        history=history,
        metrics=metrics,
        best_epoch=2,
        epochs_run=3,
        stopped_reason="completed",
        message=None,
        seconds=0.6,
        device="cpu",
        params=model.parameter_count(),
    )
    return TrainedRun(config=config, dataset=dataset, model=model, result=result)


def predictions(run) -> np.ndarray:
    with torch.no_grad():
        out = run.model(torch.from_numpy(run.dataset.X_test))
    return torch.cat([out.prediction, out.gate_weights], dim=-1).numpy()


def entries(root: Path) -> list[str]:
    return sorted(p.name for p in root.iterdir())


# ----- round trip ----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "task,gate,expert",
    [("regression", "grkan", "kan"), ("classification", "linear", "mlp"), ("regression", "grn", "mlp")],
)
def test_save_load_round_trip_identical(tmp_path: Path, task: str, gate: str, expert: str) -> None:
    store = RunStore(tmp_path)
    run = make_run(task, gate, expert)
    with torch.no_grad():  # a trained KAN layer has a non-uniform grid: the buffer must survive too
        for ref in run.model.kan_layers():
            ref.layer.grid.mul_(1.5)
    run_id = store.save(run, name="first try", notes="line one\nline two")
    assert run.run_id == run_id
    loaded = store.load(run_id)
    assert loaded.run_id == run_id
    np.testing.assert_array_equal(predictions(loaded), predictions(run))
    original = run.model.state_dict()
    for key, tensor in loaded.model.state_dict().items():
        assert torch.equal(tensor, original[key]), key
    assert not loaded.model.training
    assert loaded.config.to_dict() == run.config.to_dict()
    for name in ("X_train", "y_train", "X_test", "y_test", "regimes_val", "x_std"):
        np.testing.assert_array_equal(getattr(loaded.dataset, name), getattr(run.dataset, name))
        assert getattr(loaded.dataset, name).dtype == getattr(run.dataset, name).dtype
    assert loaded.dataset.feature_names == run.dataset.feature_names
    assert loaded.dataset.class_names == run.dataset.class_names
    assert (loaded.dataset.y_mean, loaded.dataset.y_std, loaded.dataset.task) == (0.5, 2.0, task)
    pd.testing.assert_frame_equal(loaded.result.history, run.result.history, check_dtype=False)
    assert loaded.result.metrics == run.result.metrics
    assert (loaded.result.best_epoch, loaded.result.params, loaded.result.device) == (2, run.result.params, "cpu")
    assert store.info(run_id)["notes"] == "line one\nline two"


def test_weights_are_safetensors_and_nothing_is_pickled(tmp_path: Path) -> None:
    from safetensors.torch import load_file

    store = RunStore(tmp_path)
    run_id = store.save(make_run())
    folder = tmp_path / run_id
    assert sorted(os.listdir(folder)) == sorted(
        [
            "format.json",
            "config.json",
            "weights.safetensors",
            "metrics.json",
            "history.csv",
            "dataset.json",
            "dataset.safetensors",
        ]
    )
    assert set(load_file(folder / "weights.safetensors")) == set(make_run().model.state_dict())
    for file in folder.iterdir():
        assert b"\x80\x04\x95" not in file.read_bytes()[:16], file  # no pickle protocol-4 header anywhere


def test_root_from_argument_env_or_cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KAMOE_RUNS_DIR", str(tmp_path / "from_env"))
    assert RunStore().root == (tmp_path / "from_env").resolve()
    assert RunStore(tmp_path / "explicit").root == (tmp_path / "explicit").resolve()
    monkeypatch.delenv("KAMOE_RUNS_DIR")
    monkeypatch.chdir(tmp_path)
    assert RunStore().root == (tmp_path / "runs").resolve()


def test_csv_of_uploaded_data_is_kept_in_the_run(tmp_path: Path) -> None:
    store = RunStore(tmp_path / "runs")
    csv = b"a,b,target\n1,2,3\n4,5,6\n"
    run_id = store.save(make_run(), csv=csv)
    assert (tmp_path / "runs" / run_id / "data.csv").read_bytes() == csv
    # a config pointing at a CSV file copies that file
    source = tmp_path / "mine.csv"
    source.write_bytes(csv + b"7,8,9\n")
    run = make_run()
    run.config.data.csv_path = str(source)
    run_id2 = store.save(run)
    source.unlink()  # the original upload is gone; the run still loads
    assert (tmp_path / "runs" / run_id2 / "data.csv").read_bytes() == csv + b"7,8,9\n"
    assert store.load(run_id2).run_id == run_id2


# ----- listing -------------------------------------------------------------------------------------------------------
def test_list_runs_newest_first_with_summary(tmp_path: Path) -> None:
    store = RunStore(tmp_path)
    assert list(store.list_runs().columns) == LIST_COLUMNS and store.list_runs().empty
    first = store.save(make_run(), name="older")
    store.rename(first, name="older")
    manifest = tmp_path / first / "format.json"  # make creation order explicit
    manifest.write_text(manifest.read_text().replace(store.info(first)["created"], "2001-01-01T00:00:00+00:00"))
    second = store.save(make_run("classification", "linear", "mlp"))
    table = store.list_runs()
    assert list(table["run_id"]) == [second, first]
    row = table.iloc[1]
    assert (row["name"], row["dataset"], row["gate"], row["expert"], row["n_experts"]) == (
        "older",
        "regimes",
        "grkan",
        "kan",
        2,
    )
    assert (row["metric"], row["value"], row["epochs"], row["device"]) == ("r2", 0.75, 3, "cpu")
    assert table.iloc[0]["metric"] == "accuracy" and table.iloc[0]["name"].startswith("regimes: linear gate")
    assert table["error"].isna().all()


def test_corrupt_run_folders_are_listed_with_an_error_not_a_crash(tmp_path: Path) -> None:
    store = RunStore(tmp_path)
    good = store.save(make_run())
    no_weights = store.save(make_run())
    (tmp_path / no_weights / "weights.safetensors").unlink()
    edited = store.save(make_run())
    cfg = tmp_path / edited / "config.json"
    cfg.write_text(cfg.read_text().replace('"n_experts": 2', '"n_experts": 3'))
    garbage = tmp_path / "20200101-000000-abcdef"
    garbage.mkdir()
    (garbage / "format.json").write_bytes(b"\xff\x00not json")
    (tmp_path / "notes.txt").write_text("a stray file is ignored")
    table = store.list_runs().set_index("run_id")
    assert table.loc[good, "error"] is None or pd.isna(table.loc[good, "error"])
    assert "weights.safetensors" in table.loc[no_weights, "error"]
    assert "config.json" in table.loc[edited, "error"] and "sha256" in table.loc[edited, "error"]
    assert "format.json" in table.loc[garbage.name, "error"]
    for bad in (no_weights, edited, garbage.name):
        with pytest.raises(RunFileError):
            store.load(bad)
    np.testing.assert_array_equal(predictions(store.load(good)), predictions(make_run()))


# ----- rename, delete, ids -------------------------------------------------------------------------------------------
def test_rename_and_notes(tmp_path: Path) -> None:
    store = RunStore(tmp_path)
    run_id = store.save(make_run(), name="a")
    store.rename(run_id, name="  Three regimes, GRKAN  ")
    store.rename(run_id, notes="works well")
    info = store.info(run_id)
    assert (info["name"], info["notes"]) == ("Three regimes, GRKAN", "works well")
    with pytest.raises(ValidationError, match="run name"):
        store.rename(run_id, name="two\nlines")
    with pytest.raises(ValidationError, match="at most 120"):
        store.rename(run_id, name="x" * 121)
    assert store.info(run_id)["name"] == "Three regimes, GRKAN"
    assert store.load(run_id).run_id == run_id  # renaming does not break the hashes
    assert [p for p in os.listdir(tmp_path / run_id) if "tmp" in p] == []


def test_delete(tmp_path: Path) -> None:
    store = RunStore(tmp_path)
    keep, gone = store.save(make_run()), store.save(make_run())
    store.delete(gone)
    assert list(store.list_runs()["run_id"]) == [keep]
    assert entries(tmp_path) == [keep]
    with pytest.raises(RunFileError, match="does not exist"):
        store.delete(gone)
    with pytest.raises(RunFileError, match="does not exist"):
        store.load(gone)


@pytest.mark.parametrize(
    "bad", ["..", "../outside", "/etc", "a/b", "a\\b", ".tmp-1-x", "", "x" * 81, "run id", "~", "C:evil", None, 5]
)
def test_path_traversal_and_bad_ids_are_refused(tmp_path: Path, bad: object) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "format.json").write_text("{}")
    store = RunStore(tmp_path / "runs")
    run_id = store.save(make_run())
    for call in (store.load, store.delete, store.export_bytes, store.info, lambda r: store.rename(r, name="x")):
        with pytest.raises(ValidationError, match="run_id"):
            call(bad)
    assert (outside / "format.json").exists()
    assert entries(tmp_path / "runs") == [run_id]


def test_stale_temp_folders_are_removed_on_open(tmp_path: Path) -> None:
    store = RunStore(tmp_path)
    run_id = store.save(make_run())
    dead = tmp_path / ".tmp-999999999-deadbeef"  # pid that cannot exist
    dead.mkdir()
    (dead / "config.json").write_text("half")
    live = tmp_path / f".tmp-{os.getpid()}-cafe0000"  # a save in progress in a live process is left alone
    live.mkdir()
    trash = tmp_path / ".trash-1-00"
    trash.mkdir()
    assert list(store.list_runs()["run_id"]) == [run_id]  # never listed
    RunStore(tmp_path)
    assert entries(tmp_path) == sorted([run_id, live.name])
    os.utime(live, (0, 0))  # ...unless it is older than stale_seconds
    RunStore(tmp_path, stale_seconds=60)
    assert entries(tmp_path) == [run_id]


def test_save_rejects_what_is_not_a_run(tmp_path: Path) -> None:
    store = RunStore(tmp_path)
    with pytest.raises(ValidationError, match="TrainedRun"):
        store.save(object())
    assert entries(tmp_path) == []


def test_disk_full_during_save_changes_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import errno

    from kamoe_viz.runstore import store as store_module

    store = RunStore(tmp_path)
    earlier = store.save(make_run())
    real_write = store_module._write_file

    def full_disk(path: Path, data: bytes) -> None:
        if path.name == "history.csv":
            raise OSError(errno.ENOSPC, "No space left on device")
        real_write(path, data)

    monkeypatch.setattr(store_module, "_write_file", full_disk)
    with pytest.raises(RunFileError, match="No space left on device.*no saved run was changed"):
        store.save(make_run())
    assert entries(tmp_path) == [earlier]
    assert store.load(earlier).run_id == earlier


def test_runs_folder_removed_while_open(tmp_path: Path) -> None:
    store = RunStore(tmp_path / "runs")
    (tmp_path / "runs").rmdir()
    assert store.list_runs().empty
    run_id = store.save(make_run())  # recreated on save
    assert list(store.list_runs()["run_id"]) == [run_id]


# ----- with the real trainer -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("lr", [1e-2, 10.0])  # 10.0 diverges at once: an empty history must survive
def test_really_trained_run_round_trip(tmp_path: Path, lr: float) -> None:
    from kamoe_viz.training import train_run

    config = RunConfig(
        DataConfig(name="regimes"),
        ModelConfig(gate="grkan", expert="kan", expert_hidden=(4,), n_experts=2),
        TrainConfig(epochs=4, batch_size=16, lr=lr, device="cpu", max_grad_norm=0.0),
    )
    run = train_run(config, dataset=make_dataset(n=60))
    store = RunStore(tmp_path)
    loaded = store.load(store.save(run))
    np.testing.assert_array_equal(predictions(loaded), predictions(run))
    pd.testing.assert_frame_equal(loaded.result.history, run.result.history, check_dtype=False)
    assert loaded.result.stopped_reason == run.result.stopped_reason
    assert set(loaded.result.metrics) == set(run.result.metrics)
    for key, value in run.result.metrics.items():
        assert loaded.result.metrics[key] == pytest.approx(value, nan_ok=True), key
    assert (loaded.result.epochs_run, loaded.result.params, loaded.result.message) == (
        run.result.epochs_run,
        run.result.params,
        run.result.message,
    )
