"""Runs saved without their dataset arrays (too large to store) are rebuilt with the data loaders: built-in datasets
by load_dataset, uploaded CSVs from the copy kept in the run; a rebuild that differs from the original is refused."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from test_runs import predictions

from kamoe_viz.config import DataConfig, ModelConfig, RunConfig, TrainConfig
from kamoe_viz.data import dataset_from_frame, load_dataset, read_csv_table
from kamoe_viz.errors import RunFileError
from kamoe_viz.runstore import RunStore
from kamoe_viz.runstore.fileformat import sha256
from kamoe_viz.training import train_run

CSV = "x1,x2,label\n" + "".join(f"{i % 7},{(i * 3) % 11},{(i % 7) * 0.5 + (i % 3)}\n" for i in range(80))


def config(data: DataConfig) -> RunConfig:
    return RunConfig(
        data,
        ModelConfig(gate="linear", expert="mlp", expert_hidden=(4,), n_experts=2),
        TrainConfig(epochs=2, batch_size=16, device="cpu"),
    )


def forge_config(folder: Path, edit) -> None:
    """Edit config.json in a stored run and fix its hash, as if the file had been written that way."""
    cfg = json.loads((folder / "config.json").read_text())
    edit(cfg)
    data = json.dumps(cfg).encode()
    (folder / "config.json").write_bytes(data)
    manifest = json.loads((folder / "format.json").read_text())
    manifest["files"]["config.json"] = {"sha256": sha256(data), "size": len(data)}
    (folder / "format.json").write_text(json.dumps(manifest))


def test_builtin_dataset_is_rebuilt_and_checked(tmp_path: Path) -> None:
    data = DataConfig(name="regimes", options={"n_samples": 200})
    run = train_run(config(data), dataset=load_dataset(data))
    store = RunStore(tmp_path, max_dataset_bytes=0)  # never store the arrays
    run_id = store.save(run)
    assert not (tmp_path / run_id / "dataset.safetensors").exists()
    loaded = store.load(run_id)
    np.testing.assert_array_equal(loaded.dataset.X_test, run.dataset.X_test)
    np.testing.assert_array_equal(predictions(loaded), predictions(run))
    # a config whose data no longer matches the weights' data is refused with the reason
    forge_config(tmp_path / run_id, lambda c: c["data"].update(seed=1))
    with pytest.raises(RunFileError, match="rebuilt today differs"):
        store.load(run_id)
    # and export/import of an array-less run still checks the weights against the recorded dimensions
    other = RunStore(tmp_path / "other", max_dataset_bytes=0)
    fresh = other.save(run)
    imported = RunStore(tmp_path / "third").import_bytes(other.export_bytes(fresh), "x.zip")
    assert imported == fresh


def test_uploaded_csv_is_rebuilt_from_the_copy_in_the_run(tmp_path: Path) -> None:
    raw = CSV.encode()
    dataset = dataset_from_frame(
        read_csv_table(raw),
        "label",
        ["x1", "x2"],
        name="my_upload",
        seed=0,
        test_fraction=0.2,
        val_fraction=0.2,
        task="regression",
    )
    data = DataConfig(name="csv", target="label", features=("x1", "x2"))
    run = train_run(config(data), dataset=dataset)
    store = RunStore(tmp_path, max_dataset_bytes=0)
    run_id = store.save(run, csv=raw)  # the app hands over the upload's bytes
    assert (tmp_path / run_id / "data.csv").read_bytes() == raw
    loaded = store.load(run_id)
    assert loaded.dataset.name == "my_upload"
    np.testing.assert_array_equal(predictions(loaded), predictions(run))


def test_csv_file_dataset_reloads_after_the_file_is_gone(tmp_path: Path) -> None:
    source = tmp_path / "mine.csv"
    source.write_text(CSV)
    data = DataConfig(name="csv", csv_path=str(source), target="label")
    run = train_run(config(data))
    store = RunStore(tmp_path / "runs", max_dataset_bytes=0)
    run_id = store.save(run)
    source.unlink()
    loaded = store.load(run_id)
    np.testing.assert_array_equal(predictions(loaded), predictions(run))
    assert loaded.config.data.csv_path == str(source)  # the config itself is returned as it was saved
