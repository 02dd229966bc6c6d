"""Training timeline and the play/pause/step session: continuing equals never pausing, bounded snapshots, the
timeline saved in the run (and runs without one still load), live settings, new data, ``train --snapshot-every``."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

torch.set_num_threads(1)

from kamoe_viz.cli import main
from kamoe_viz.config import RunConfig
from kamoe_viz.errors import ValidationError
from kamoe_viz.runstore.store import RunStore
from kamoe_viz.training import train_run
from kamoe_viz.training.session import TrainingSession, is_generated, live_changes
from kamoe_viz.training.timeline import MAX_SNAPSHOTS, MEMBERS, Timeline, snapshot_schedule


def moons_config(epochs: int = 12, n_samples: int = 300, **train) -> RunConfig:
    raw = RunConfig().to_dict()
    raw["data"].update(name="moons", options={"n_samples": n_samples})
    raw["model"].update(gate="grkan", gate_activation="softmax", n_experts=2, expert="mlp", expert_hidden=[8])
    raw["train"].update(epochs=epochs, lr=1e-2, batch_size=64, device="cpu", early_stopping=0, **train)
    return RunConfig.from_dict(raw)


def test_schedule_every_epoch_when_short_log_spaced_when_long() -> None:
    assert snapshot_schedule(60) == list(range(61))
    long = snapshot_schedule(5000)
    assert len(long) <= MAX_SNAPSHOTS and long[0] == 0 and long[-1] == 5000
    assert long == sorted(set(long))
    assert long[:20] == list(range(20))  # dense where routing forms
    assert snapshot_schedule(10, every=4) == [0, 4, 8, 10]
    assert len(snapshot_schedule(10_000, every=1)) == MAX_SNAPSHOTS
    with pytest.raises(ValidationError, match="snapshot_every"):
        snapshot_schedule(10, every=0)


def test_pause_then_continue_equals_an_uninterrupted_run() -> None:
    config = moons_config(epochs=12)
    reference = train_run(config)
    session = TrainingSession(config)
    session.step()
    session.step(2)
    assert session.epoch == 3 and not session.playing
    session.play()
    session.tick("1 epoch/s")
    session.pause()
    assert session.epoch == 4
    before = session.epoch
    assert session.tick("1 epoch/s") == [] and session.epoch == before  # paused: nothing moves
    session.play()
    while not session.done:
        session.tick("real time")
    run = session.finish()
    assert run.result.epochs_run == reference.result.epochs_run == 12
    np.testing.assert_allclose(run.result.history["val_loss"], reference.result.history["val_loss"], rtol=1e-6)
    for key, value in reference.model.state_dict().items():
        torch.testing.assert_close(run.model.state_dict()[key], value, rtol=1e-6, atol=1e-7)
    assert run.timeline.epochs == list(range(13))
    assert session.status_line().startswith("Epoch 12 / 12")


def test_snapshots_are_bounded_and_pauses_are_kept() -> None:
    config = moons_config(epochs=400, n_samples=120)
    session = TrainingSession(config)
    planned = session.timeline.planned
    assert len(planned) <= MAX_SNAPSHOTS and 0 in planned and 400 in planned
    session.step(7)  # epoch 7 is planned; step 9 may not be, but a pause keeps it
    session.step(2)
    assert 9 in session.timeline.epochs
    session.play()
    while not session.done:
        session.tick("real time")
    timeline = session.timeline
    assert len(timeline.snapshots) <= MAX_SNAPSHOTS
    assert timeline.epochs == sorted(timeline.epochs) and timeline.epochs[-1] == 400
    snap = timeline.at(9)
    assert snap.epoch == 9 and snap.region.shape[1] == 2 and snap.prediction.shape[1] == 2
    assert set(snap.splines) == {"gate.kan1", "gate.kan2"}
    every_edge, top = timeline.spline_frame(snap), timeline.spline_frame(snap, top=5)
    assert top["edge"].nunique() == 5 < every_edge["edge"].nunique()
    last = timeline.snapshots[-1].splines
    spans = sorted(
        (float(np.ptp(v[:, j, i])) for v in last.values() for j in range(v.shape[1]) for i in range(v.shape[2])),
        reverse=True,
    )
    kept = {(r.layer, r.output, r.input) for r in top.itertuples()}
    assert min(float(np.ptp(last[lay][:, j, i])) for lay, j, i in kept) == spans[4]  # the five widest
    assert set(timeline.spline_frame(timeline.at(0), top=5)["edge"]) == set(top["edge"])  # same panels each epoch
    from kamoe_viz.interpret.splines import edge_curves

    for layer in ("gate.kan1", "gate.kan2"):  # edges named as on the Splines page (h3 → kan1·0), not "in 3 → out 0"
        page = edge_curves(session.model, session.dataset, layer)
        assert set(every_edge[every_edge.layer == layer]["edge"]) == set(page["edge"])
    frame = timeline.region_frame(snap)
    assert {"x", "y", "expert", "weight", "winner", "winning_weight"} <= set(frame.columns)


def test_timeline_metrics_come_from_routing_metrics() -> None:
    from kamoe_viz.routing_metrics import expert_load, regime_nmi, routing_entropy

    session = TrainingSession(moons_config(epochs=5))
    session.step(5)
    snap = session.timeline.snapshots[-1]
    assert snap.metrics["nmi"] == pytest.approx(regime_nmi(snap.weights, session.timeline.probe_regimes))
    assert snap.metrics["routing_entropy"] == pytest.approx(routing_entropy(snap.weights))
    np.testing.assert_allclose(snap.metrics["load"], expert_load(snap.weights))
    frame = session.timeline.metrics_frame()
    assert list(frame["epoch"]) == list(range(6)) and frame["nmi"].between(0, 1).all()
    loads = session.timeline.load_frame().groupby("epoch")["load"].sum()
    np.testing.assert_allclose(loads, 1.0)
    settled = session.timeline.settle_epoch()
    assert settled is not None and 0 <= settled <= 5


def test_timeline_saved_in_the_run_and_loaded_back(tmp_path: Path) -> None:
    session = TrainingSession(moons_config(epochs=6))
    session.play()
    while not session.done:
        session.tick("5 epochs/s")
    run = session.finish()
    store = RunStore(tmp_path)
    run_id = store.save(run)
    assert all((tmp_path / run_id / m).is_file() for m in MEMBERS)
    loaded = store.load(run_id).timeline
    assert loaded is not None and loaded.epochs == run.timeline.epochs
    for a, b in zip(run.timeline.snapshots, loaded.snapshots):
        np.testing.assert_allclose(a.weights, b.weights)
        np.testing.assert_allclose(a.region, b.region)
        np.testing.assert_allclose(a.splines["gate.kan1"], b.splines["gate.kan1"])
        assert a.metrics["nmi"] == pytest.approx(b.metrics["nmi"], nan_ok=True)
    assert loaded.settle_epoch() == run.timeline.settle_epoch()
    with pytest.raises(ValidationError, match="saved run"):
        loaded.capture(run.model, 99)


def test_runs_without_a_timeline_still_load(tmp_path: Path) -> None:
    run = train_run(moons_config(epochs=2))
    assert run.timeline is None
    store = RunStore(tmp_path)
    run_id = store.save(run)
    assert not any((tmp_path / run_id / m).exists() for m in MEMBERS)
    assert store.load(run_id).timeline is None
    assert Timeline.from_members({}) is None


def test_live_settings_apply_on_continue_and_others_are_locked() -> None:
    config = moons_config(epochs=6)
    session = TrainingSession(config)
    session.step(2)
    session.update(lr=1e-3)
    assert session.trainer.lr == pytest.approx(1e-3) and session.config.train.lr == pytest.approx(1e-3)
    session.step()
    assert session.epochs[-1].lr == pytest.approx(1e-3)
    path = session.trainer.gradient_path
    session.update(balance_loss=0.5)  # the closed-form gradients take the balance loss too: the path stays
    assert session.trainer.objective.weights == {"balance_loss": 0.5}
    assert session.trainer.gradient_path == path
    if path == "direct":
        assert session.trainer.stepper.direct.aux_weights == {"balance_loss": 0.5}
    session.step()
    assert np.isfinite(session.last.train_loss)
    with pytest.raises(ValidationError, match="Locked"):
        session.update(batch_size=8)
    with pytest.raises(ValidationError, match="train.lr"):
        session.update(lr=-1.0)
    changed = RunConfig.from_dict(
        {
            **config.to_dict(),
            "train": {**config.to_dict()["train"], "lr": 0.5},
            "model": {**config.to_dict()["model"], "n_experts": 3},
        }
    )
    live, locked = live_changes(config, changed)
    assert live == {"lr": 0.5} and locked == ["model.n_experts"]


def test_reset_and_new_data() -> None:
    session = TrainingSession(moons_config(epochs=4))
    first = session.model.state_dict()["gate.kan1.base_weight"].clone()
    session.step(3)
    session.reset()
    assert session.epoch == 0 and session.timeline.epochs == [0]
    torch.testing.assert_close(session.model.state_dict()["gate.kan1.base_weight"], first)
    old = session.dataset.X_train.copy()
    session.new_data()
    assert session.config.data.seed == 1 and not np.array_equal(session.dataset.X_train, old)
    assert is_generated("moons") and is_generated("regime_series") and not is_generated("diabetes")
    fixed = RunConfig.from_dict(
        {**RunConfig().to_dict(), "data": {"name": "diabetes"}, "train": {"epochs": 2, "device": "cpu"}}
    )
    with pytest.raises(ValidationError, match="generated datasets only"):
        TrainingSession(fixed).new_data()


def test_sequence_and_standard_models_get_a_timeline() -> None:
    raw = RunConfig().to_dict()
    raw["data"].update(name="regime_series", options={"length": 400})
    raw["model"].update(expert="lstm", expert_hidden=[4], n_experts=2)
    raw["train"].update(epochs=2, device="cpu")
    session = TrainingSession(RunConfig.from_dict(raw))
    session.step(2)
    snap = session.timeline.snapshots[-1]
    assert snap.region is None and snap.weights.shape[-1] == 2
    raw = moons_config(epochs=2).to_dict()
    raw["model"]["kind"] = "standard"
    session = TrainingSession(RunConfig.from_dict(raw))
    session.step(2)
    assert session.timeline.snapshots[-1].weights.shape[-1] == 1


def test_cli_snapshot_every_saves_a_timeline(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    code = main(
        [
            "train",
            "--dataset",
            "moons",
            "--option",
            "n_samples=200",
            "--hidden",
            "8",
            "--experts",
            "2",
            "--epochs",
            "7",
            "--patience",
            "0",
            "--device",
            "cpu",
            "--quiet",
            "--snapshot-every",
            "3",
            "--save",
            "--runs-dir",
            str(tmp_path),
            "--json",
        ]
    )
    out, err = capsys.readouterr()
    assert code == 0, err
    run_id = json.loads(out.strip().splitlines()[-1])["run_id"]
    assert RunStore(tmp_path).load(run_id).timeline.epochs == [0, 3, 6, 7]
    code = main(["train", "--dataset", "moons", "--epochs", "3", "--snapshot-every", "9", "--quiet"])
    assert code == 2 and "--snapshot-every" in capsys.readouterr().err


@pytest.mark.parametrize("routing", ["dense", "expert_choice"])
def test_snapshot_equals_separate_forward_passes(routing: str) -> None:
    """One forward over probe + grid gives the same snapshot as the probe and the grid apart (a batch-dependent
    router such as expert choice is run apart, since its weights depend on the other rows)."""
    from kamoe_viz.data import load_dataset
    from kamoe_viz.interpret._common import to_tensor
    from kamoe_viz.nn import build_model

    config = moons_config(epochs=3)
    config.model.routing = routing
    config.model.n_experts = 3
    if routing == "expert_choice":
        config.model.top_k = 0
    config = config.validate()
    dataset = load_dataset(config.data)
    torch.manual_seed(0)
    model = build_model(config.model, dataset).eval()
    timeline = Timeline.create(model, dataset, 3)
    snap = timeline.capture(model, 0)
    with torch.no_grad():
        probe = model.gate_weights(to_tensor(model, timeline._probe_X)).numpy()
        cells = model(to_tensor(model, timeline._cells)).gate_weights.numpy()
    assert np.allclose(snap.weights, probe, atol=1e-6)
    assert np.allclose(snap.region, cells, atol=1e-6)
