"""Experiment tracking export: what `train`/`compare --mlflow --tensorboard` write, read back with MLflow's client
and TensorBoard's event reader, and compared with values computed independently here."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("mlflow", reason="the tracking extra (mlflow-skinny) is not installed")
pytest.importorskip("tensorboard", reason="the tracking extra (tensorboard) is not installed")

from mlflow.tracking import MlflowClient
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from kamoe_viz.cli import main
from kamoe_viz.routing_metrics import routing_summary
from kamoe_viz.tracking import LOAD_TAG, Tracker, config_params

TINY = [
    "--option",
    "n_samples=300",
    "--hidden",
    "8",
    "--experts",
    "3",
    "--batch-size",
    "64",
    "--device",
    "cpu",
    "--quiet",
]


def _events(folder: Path) -> EventAccumulator:
    acc = EventAccumulator(str(folder), size_guidance={"scalars": 0, "histograms": 0, "tensors": 0})
    acc.Reload()
    return acc


def _history(client: MlflowClient, run_id: str, key: str) -> list[tuple[int, float]]:
    return sorted((m.step, m.value) for m in client.get_metric_history(run_id, key))


def test_library_tracker_logs_what_the_trainer_saw(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each epoch's routing metrics and load equal routing_summary of the gate weights the trainer handed over."""
    monkeypatch.chdir(tmp_path)  # MLflow puts artifacts under ./mlruns next to a sqlite store
    import torch

    from kamoe_viz.config import DataConfig, ModelConfig, RunConfig, TrainConfig
    from kamoe_viz.data import load_dataset
    from kamoe_viz.nn import build_model
    from kamoe_viz.training import Trainer

    config = RunConfig(
        data=DataConfig(name="regimes", options={"n_samples": 300}),
        model=ModelConfig(gate="grkan", n_experts=3, expert_hidden=(8,)),
        train=TrainConfig(epochs=3, batch_size=64, device="cpu"),
    ).validate()
    dataset = load_dataset(config.data)
    torch.manual_seed(0)
    model = build_model(config.model, dataset)
    uri = f"sqlite:///{tmp_path / 'lib.db'}"
    tracker = Tracker.open(config_params(config), "library run", tensorboard=str(tmp_path / "tb"))
    from kamoe_viz.tracking.sinks import MlflowSink

    sink = MlflowSink("library run", tracking_uri=uri)
    sink.log_params(config_params(config))
    tracker.sinks.append(sink)
    seen = []
    trainer = Trainer(
        model, dataset, config.train, on_epoch=tracker.epoch_logger(dataset, 64, then=lambda info: seen.append(info))
    )
    trainer.run_epochs(3)
    tracker.close()
    assert len(seen) == 3
    client = MlflowClient(tracking_uri=uri)
    run = client.get_run(sink.run_id)
    assert run.data.params["model.gate"] == "grkan" and run.data.params["model.expert_hidden"] == "8"
    assert run.info.status == "FINISHED"
    events = _events(tmp_path / "tb" / "library_run")
    hist = events.Histograms(LOAD_TAG)
    assert [h.step for h in hist] == [1, 2, 3]
    for info, h in zip(seen, hist):
        rows = len(info.gate_weights)
        expected = routing_summary(info.gate_weights, dataset.regimes_val[:rows], 64)
        assert _history(client, sink.run_id, "val_loss")[info.epoch - 1] == (info.epoch, pytest.approx(info.val_loss))
        for key in ("load_cv", "gini", "routing_entropy", "nmi", "max_violation_batch"):
            logged = dict(_history(client, sink.run_id, f"routing/{key}"))[info.epoch]
            assert logged == pytest.approx(expected[key], rel=1e-6), key
        for e, share in enumerate(expected["load"]):
            assert dict(_history(client, sink.run_id, f"{LOAD_TAG}/expert_{e}"))[info.epoch] == pytest.approx(share)
        # the histogram: one bucket per expert, holding its share
        assert list(h.histogram_value.bucket_limit) == [0.5, 1.5, 2.5]
        assert np.allclose(h.histogram_value.bucket, expected["load"])
        scalars = {s.step: s.value for s in events.Scalars("routing/nmi")}
        assert scalars[info.epoch] == pytest.approx(expected["nmi"], rel=1e-5)


def test_train_cli_writes_both_stores(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)  # the default store: sqlite in the working directory
    assert main(["train", *TINY, "--epochs", "4", "--json", "--mlflow", "--tensorboard", "tb"]) == 0
    record = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert (tmp_path / "mlflow.db").is_file()
    client = MlflowClient(tracking_uri="sqlite:///mlflow.db")
    experiment = client.get_experiment_by_name("kamoe-viz")
    (run,) = client.search_runs([experiment.experiment_id])
    assert run.data.params["train.epochs"] == "4" and run.data.params["model.n_experts"] == "3"
    assert run.data.metrics["r2"] == pytest.approx(record["r2"])  # the final test metric, as --json prints it
    assert [s for s, _ in _history(client, run.info.run_id, "val_loss")] == [1, 2, 3, 4]
    assert [s for s, _ in _history(client, run.info.run_id, "routing/nmi")] == [1, 2, 3, 4]
    artifact = client.download_artifacts(run.info.run_id, "routing_load.json", str(tmp_path))
    load = json.loads(Path(artifact).read_text())
    assert load["step"] == 4 and len(load["load"]) == 3 and sum(load["load"]) == pytest.approx(1.0)
    (folder,) = (tmp_path / "tb").iterdir()
    events = _events(folder)
    tb_val = [(s.step, s.value) for s in events.Scalars("val_loss")]
    assert [(s, pytest.approx(v)) for s, v in _history(client, run.info.run_id, "val_loss")] == tb_val
    assert len(events.Histograms(LOAD_TAG)) == 4


def test_compare_cli_logs_a_parent_and_one_child_per_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    uri = f"sqlite:///{tmp_path / 'cmp.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.chdir(tmp_path)
    code = main(
        [
            "compare",
            "--gates",
            "linear,grkan",
            "--seeds",
            "2",
            "--no-standard",
            "--epochs",
            "3",
            "--patience",
            "0",
            *TINY,
            "--out",
            "runs.csv",
            "--mlflow",
            "--mlflow-experiment",
            "cmp",
            "--tensorboard",
            "tb",
        ]
    )
    assert code == 0
    import pandas as pd

    table = pd.read_csv(tmp_path / "runs.csv")
    client = MlflowClient(tracking_uri=uri)
    runs = client.search_runs([client.get_experiment_by_name("cmp").experiment_id])
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    assert len(parents) == 1 and len(children) == len(table) == 4
    assert {r.data.tags["mlflow.parentRunId"] for r in children} == {parents[0].info.run_id}
    assert parents[0].data.params["compare.seeds"] == "0,1"
    for child in children:
        variant, seed = child.data.params["run.variant"], int(child.data.params["run.seed"])
        row = table[(table.variant == variant) & (table.seed == seed)].iloc[0]
        assert child.data.metrics["test_metric"] == pytest.approx(row.test_metric)
        assert len(_history(client, child.info.run_id, "val_loss")) == row.epochs_run == 3
        loads = [child.data.metrics[f"{LOAD_TAG}/expert_{e}"] for e in range(3)]
        assert sum(loads) == pytest.approx(1.0)
    child_dirs = sorted(p.name for p in (tmp_path / "tb").glob("*/*") if p.is_dir())
    assert child_dirs == ["grkan_seed0", "grkan_seed1", "linear_seed0", "linear_seed1"]
    assert len(_events(next((tmp_path / "tb").glob("*/grkan_seed1"))).Histograms(LOAD_TAG)) == 1


def test_bad_tensorboard_folder_is_refused_before_training(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    blocker = tmp_path / "file.txt"
    blocker.write_text("x")
    assert main(["train", *TINY, "--epochs", "1", "--tensorboard", str(blocker)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--tensorboard" in err and "folder" in err
