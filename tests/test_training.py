"""Training: determinism, early stopping and best weights, plateau LR, bursts, callbacks, evaluation, prediction."""

from __future__ import annotations

import numpy as np
import pytest
import torch

torch.set_num_threads(1)  # 2 shared CPU cores: one thread per test process is much faster than fighting over two

from kamoe_viz import metrics as M
from kamoe_viz.config import DataConfig, ModelConfig, RunConfig, TrainConfig
from kamoe_viz.data.base import Dataset
from kamoe_viz.errors import ValidationError
from kamoe_viz.nn import build_model
from kamoe_viz.training import (
    EpochInfo,
    TrainedRun,
    Trainer,
    TrainResult,
    available_devices,
    baseline_config,
    evaluate,
    fit,
    predict,
    resolve_device,
    train_run,
)


# ----- tiny data (shared with the other test_training_* modules) -----------------------------------------------------
def tiny_dataset(
    task: str = "regression",
    n: int = 240,
    features: int = 3,
    seed: int = 0,
    classes: int = 3,
    y_mean: float = 5.0,
    y_std: float = 2.0,
) -> Dataset:
    """Train/val/test from one smooth function; regression targets scaled as a loader would (y_mean, y_std)."""
    rng = np.random.default_rng(seed)

    def part(rows: int):
        X = rng.normal(size=(rows, features)).astype(np.float32)
        signal = 1.5 * X[:, 0] + np.sin(2 * X[:, 1]) + (X[:, 2] if features > 2 else 0)
        if task == "classification":
            y = np.digitize(signal, np.quantile(signal, np.linspace(0, 1, classes + 1)[1:-1])).astype(np.int64)
        else:
            y = ((signal - signal.mean()) / 1.5).astype(np.float32).reshape(-1, 1)
        return X, y, (signal > 0).astype(np.int64)

    (Xa, ya, ra), (Xb, yb, rb), (Xc, yc, rc) = part(n), part(n // 3), part(n // 3)
    return Dataset(
        name="tiny",
        task=task,
        feature_names=[f"x{i}" for i in range(features)],
        target_name="y",
        X_train=Xa,
        y_train=ya,
        X_val=Xb,
        y_val=yb,
        X_test=Xc,
        y_test=yc,
        class_names=[f"c{i}" for i in range(classes)] if task == "classification" else None,
        regimes_train=ra,
        regimes_val=rb,
        regimes_test=rc,
        y_mean=y_mean,
        y_std=y_std,
        x_mean=np.zeros(features, np.float32),
        x_std=np.ones(features, np.float32),
    )


def tiny_config(gate: str = "grkan", expert: str = "mlp", epochs: int = 4, **train) -> RunConfig:
    train = {"batch_size": 32, "device": "cpu", **train}
    return RunConfig(
        DataConfig(),
        ModelConfig(gate=gate, expert=expert, expert_hidden=(8,), n_experts=3),
        TrainConfig(epochs=epochs, **train),
    ).validate()


def state_of(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}


def same_state(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


# ----- determinism ----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("gate,expert", [("grkan", "mlp"), ("linear", "kan")])
def test_same_seed_same_result_bitwise(gate: str, expert: str) -> None:
    ds = tiny_dataset()
    a = train_run(tiny_config(gate, expert, epochs=3), ds)
    b = train_run(tiny_config(gate, expert, epochs=3), ds)
    assert a.result.history[["epoch", "train_loss", "val_loss", "lr"]].equals(
        b.result.history[["epoch", "train_loss", "val_loss", "lr"]]
    )
    assert a.result.metrics == b.result.metrics
    assert same_state(state_of(a.model), state_of(b.model))
    c = train_run(tiny_config(gate, expert, epochs=3, seed=1), ds)
    assert not same_state(state_of(a.model), state_of(c.model))
    assert c.result.history["train_loss"].iloc[0] != a.result.history["train_loss"].iloc[0]


def test_train_run_returns_cpu_eval_model_and_learns() -> None:
    ds = tiny_dataset(n=300)
    run = train_run(tiny_config(epochs=25, lr=3e-3), ds)
    assert isinstance(run, TrainedRun) and isinstance(run.result, TrainResult)
    assert not run.model.training and next(run.model.parameters()).device.type == "cpu"
    hist = run.result.history
    assert list(hist.columns) == ["epoch", "train_loss", "val_loss", "lr", "seconds", "balance_loss", "z_loss"]
    assert hist["epoch"].tolist() == list(range(1, len(hist) + 1))
    assert hist["val_loss"].iloc[-1] < 0.5 * hist["val_loss"].iloc[0]
    assert hist["seconds"].is_monotonic_increasing
    m = run.result.metrics
    assert m["r2"] > 0.6 and m["val_r2"] > 0.6
    assert m["params"] == run.model.parameter_count() == run.result.params
    assert run.result.stopped_reason == "completed" and run.result.message is None
    assert run.result.device == "cpu" and run.result.seconds > 0
    # the config handed in is not modified; the run holds a validated copy
    assert run.config.to_dict() == tiny_config(epochs=25, lr=3e-3).to_dict()


def test_metrics_are_in_original_units() -> None:
    ds = tiny_dataset(y_mean=100.0, y_std=10.0)
    run = train_run(tiny_config(epochs=3), ds)
    pred = predict(run.model, ds.X_test)["prediction"]
    truth, guess = ds.y_test * 10.0 + 100.0, pred * 10.0 + 100.0
    assert run.result.metrics["rmse"] == pytest.approx(np.sqrt(np.mean((truth - guess) ** 2)), rel=1e-5)
    assert run.result.metrics["r2"] == pytest.approx(M.r2(truth, guess), rel=1e-5)
    scaled_rmse = np.sqrt(np.mean((ds.y_test - pred) ** 2))
    assert run.result.metrics["rmse"] == pytest.approx(10.0 * scaled_rmse, rel=1e-4)
    val = evaluate(run.model, ds, "val")
    assert val["r2"] == pytest.approx(run.result.metrics["val_r2"])
    with pytest.raises(ValidationError, match="split"):
        evaluate(run.model, ds, "holdout")


def test_classification_uses_cross_entropy_and_scores() -> None:
    ds = tiny_dataset("classification", n=300)
    run = train_run(tiny_config(epochs=15, lr=5e-3), ds)
    m = run.result.metrics
    assert {"accuracy", "log_loss", "val_accuracy", "val_log_loss", "params"} <= set(m)
    out = predict(run.model, ds.X_test)
    assert out["prediction"].shape == (len(ds.X_test), 3)
    np.testing.assert_allclose(out["probabilities"].sum(axis=1), 1.0, rtol=1e-5)
    assert m["accuracy"] == pytest.approx(float(np.mean(out["prediction"].argmax(1) == ds.y_test)))
    logits = torch.from_numpy(out["prediction"])
    ce = torch.nn.functional.cross_entropy(logits, torch.from_numpy(ds.y_test)).item()
    assert m["log_loss"] == pytest.approx(ce, rel=1e-4)
    assert m["accuracy"] > 0.6  # three balanced classes: chance is 1/3


# ----- early stopping, best weights, plateau --------------------------------------------------------------------------
class ScriptedTrainer(Trainer):
    """A Trainer whose validation losses follow a script, so stopping and LR decisions can be checked exactly."""

    def __init__(self, *args, losses: list[float], **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.script = list(losses)
        self.states: dict[int, dict[str, torch.Tensor]] = {}

    def _validate(self):
        _, weights, aux = super()._validate()
        self.states[self.epoch + 1] = state_of(self.model)
        return self.script[self.epoch], weights, aux


def scripted(losses: list[float], **train) -> ScriptedTrainer:
    ds = tiny_dataset()
    torch.manual_seed(0)
    model = build_model(tiny_config().model, ds)
    cfg = TrainConfig(epochs=len(losses), batch_size=64, device="cpu", **train)
    return ScriptedTrainer(model, ds, cfg, losses=losses)


def test_early_stopping_restores_best_weights() -> None:
    t = scripted([1.0, 0.5, 0.7, 0.6, 0.55, 0.9, 0.1], early_stopping=3, lr_patience=0)
    infos = t.run_epochs(100)
    assert [i.epoch for i in infos] == [1, 2, 3, 4, 5]  # 3 epochs without beating 0.5 after epoch 2
    assert [i.best_epoch for i in infos] == [1, 2, 2, 2, 2]
    assert t.done
    result = t.finish()
    assert result.stopped_reason == "early_stopping" and result.best_epoch == 2 and result.epochs_run == 5
    assert same_state(state_of(t.model), t.states[2])
    assert not same_state(state_of(t.model), t.states[5])
    assert result.metrics["val_loss"] == pytest.approx(evaluate(t.model, t.dataset, "val")["loss"])


def test_early_stopping_off_runs_all_epochs() -> None:
    t = scripted([1.0, 2.0, 3.0, 4.0, 5.0], early_stopping=0, lr_patience=0)
    assert len(t.run_epochs(100)) == 5
    result = t.finish()
    assert result.stopped_reason == "completed" and result.best_epoch == 1
    assert same_state(state_of(t.model), t.states[1])


def test_plateau_reduces_lr_down_to_the_floor() -> None:
    losses = [1.0, 1.0, 1.0, 0.99995, 1.0, 1.0, 1.0, 1.0, 1.0]  # 0.99995 is below Keras' min_delta 1e-4
    t = scripted(losses, early_stopping=0, lr=1e-3, lr_patience=2, lr_factor=0.25, min_lr=1e-4)
    lrs = [i.lr for i in t.run_epochs(100)]
    # epoch 1 sets the plateau's best; 2 and 3 are worse -> reduce after 3; 4 improves too little -> 4, 5 -> reduce...
    assert lrs == pytest.approx([1e-3, 1e-3, 1e-3, 2.5e-4, 2.5e-4, 1e-4, 1e-4, 1e-4, 1e-4])
    assert t.finish().history["lr"].tolist() == pytest.approx(lrs)


def test_real_plateau_with_tiny_learning_rate() -> None:
    """lr 1e-12 leaves the loss unchanged: early stopping and the schedule act on a real flat validation loss."""
    cfg = tiny_config(epochs=20, lr=1e-12, early_stopping=3, lr_patience=1, lr_factor=0.5, min_lr=0.0)
    run = train_run(cfg, tiny_dataset())
    r = run.result
    assert r.stopped_reason == "early_stopping" and r.best_epoch == 1 and r.epochs_run == 4
    assert r.history["lr"].tolist() == pytest.approx([1e-12, 1e-12, 5e-13, 2.5e-13])


# ----- bursts, stop, callbacks ---------------------------------------------------------------------------------------
def test_bursts_equal_one_fit_and_keep_optimiser_state() -> None:
    ds = tiny_dataset()
    cfg = tiny_config(epochs=5)
    torch.manual_seed(3)
    model_a = build_model(cfg.model, ds)
    one = fit(model_a, ds, cfg.train)
    torch.manual_seed(3)
    model_b = build_model(cfg.model, ds)
    trainer = Trainer(model_b, ds, cfg.train)
    seen = trainer.run_epochs(2) + trainer.run_epochs(1) + trainer.run_epochs(10)
    assert [i.epoch for i in seen] == [1, 2, 3, 4, 5] and trainer.done
    assert trainer.run_epochs(3) == []
    burst = trainer.finish()
    assert trainer.finish() is burst
    assert one.history.drop(columns="seconds").equals(burst.history.drop(columns="seconds"))
    assert same_state(state_of(model_a), state_of(model_b))


def test_epoch_info_contents() -> None:
    ds = tiny_dataset(n=2400)  # 800 validation rows: gate weights come from the first 512
    infos: list[EpochInfo] = []
    result = fit(
        build_model(tiny_config().model, ds), ds, tiny_config(epochs=3, batch_size=256).train, on_epoch=infos.append
    )
    assert [i.epoch for i in infos] == [1, 2, 3]
    for info in infos:
        assert info.gate_weights.shape == (512, 3) and info.gate_weights.dtype == np.float32
        assert np.all((info.gate_weights >= 0) & (info.gate_weights <= 1))  # sigmoid gate
        assert info.epochs_total == 3 and info.seconds_elapsed > 0 and info.lr == pytest.approx(1e-3)
        assert np.isfinite(info.train_loss) and np.isfinite(info.val_loss)
    assert infos[0].eta_seconds > 0 and infos[-1].eta_seconds == 0
    assert result.history["val_loss"].tolist() == [i.val_loss for i in infos]


def test_callback_false_and_stop_end_training() -> None:
    ds = tiny_dataset()
    result = fit(
        build_model(tiny_config().model, ds), ds, tiny_config(epochs=50).train, on_epoch=lambda info: info.epoch < 2
    )
    assert result.stopped_reason == "stopped" and result.epochs_run == 2
    calls = iter([False, False, True])
    result = fit(
        build_model(tiny_config().model, ds), ds, tiny_config(epochs=50).train, should_stop=lambda: next(calls)
    )
    assert result.stopped_reason == "stopped" and result.epochs_run == 3
    trainer = Trainer(build_model(tiny_config().model, ds), ds, tiny_config(epochs=50).train)
    trainer.run_epochs(1)
    trainer.stop()
    assert trainer.done and trainer.run_epochs(5) == []
    assert trainer.finish().stopped_reason == "stopped"


# ----- shapes, sequences, devices, baseline ------------------------------------------------------------------------
def sequence_dataset(seq_targets: bool, n: int = 120, T: int = 6) -> Dataset:
    rng = np.random.default_rng(1)

    def part(rows: int):
        X = rng.normal(size=(rows, T, 2)).astype(np.float32)
        y = np.cumsum(X[..., :1], axis=1).astype(np.float32) / 2
        return X, (y if seq_targets else y[:, -1])

    (a, b), (c, d), (e, f) = part(n), part(n // 3), part(n // 3)
    return Dataset(
        name="seq",
        task="regression",
        feature_names=["u", "v"],
        target_name="y",
        X_train=a,
        y_train=b,
        X_val=c,
        y_val=d,
        X_test=e,
        y_test=f,
        is_sequence=True,
    )


def test_sequence_targets_need_return_sequences() -> None:
    ds = sequence_dataset(seq_targets=True)
    model_cfg = ModelConfig(gate="grn", expert="gru", expert_hidden=(8,), n_experts=2, return_sequences=True)
    cfg = RunConfig(DataConfig(), model_cfg, TrainConfig(epochs=2, batch_size=32, device="cpu")).validate()
    run = train_run(cfg, ds)
    assert np.isfinite(run.result.metrics["r2"])
    out = predict(run.model, ds.X_test)
    assert out["prediction"].shape == (40, 6, 1) and out["gate_weights"].shape == (40, 6, 2)
    cfg.model.return_sequences = False
    with pytest.raises(ValidationError, match="model.return_sequences"):
        train_run(cfg, ds)
    cfg.model.return_sequences = True
    with pytest.raises(ValidationError, match="model.return_sequences"):
        train_run(cfg, sequence_dataset(seq_targets=False))


def test_predict_shapes_batches_and_bad_input() -> None:
    ds = tiny_dataset()
    run = train_run(tiny_config(epochs=1), ds)
    whole = predict(run.model, ds.X_test)
    pieces = predict(run.model, ds.X_test, batch_size=7)
    assert whole["prediction"].shape == (80, 1) and whole["gate_weights"].shape == (80, 3)
    assert whole["expert_outputs"].shape == (80, 1, 3) and "probabilities" not in whole
    for key in whole:
        np.testing.assert_allclose(whole[key], pieces[key], rtol=1e-5, atol=1e-6)
    with pytest.raises(ValidationError, match="shape"):
        predict(run.model, np.zeros((5, 4), np.float32))
    assert predict(run.model, np.zeros((0, 3), np.float32))["prediction"].shape[0] == 0


def test_devices() -> None:
    devices = available_devices()
    assert devices[0] == "cpu"
    assert resolve_device("cpu").type == "cpu"
    expected = "cuda" if "cuda" in devices else ("mps" if "mps" in devices else "cpu")
    assert resolve_device("auto").type == expected
    for name in ("cuda", "mps"):
        if name not in devices:
            with pytest.raises(ValidationError, match=rf"train.device.*'{name}'.*available: auto, cpu"):
                resolve_device(name)
    with pytest.raises(ValidationError, match="train.device"):
        resolve_device("tpu")


def test_unavailable_device_fails_before_training() -> None:
    missing = next((d for d in ("cuda", "mps") if d not in available_devices()), None)
    if missing is None:
        pytest.skip("every device is present here")
    with pytest.raises(ValidationError, match=missing):
        train_run(tiny_config(device=missing), tiny_dataset())


def test_baseline_config_is_the_plain_network() -> None:
    cfg = tiny_config(gate="grn", epochs=7)
    cfg.model.top_k = 2
    base = baseline_config(cfg)
    assert base.model.kind == "standard" and base.model.top_k == 0
    assert cfg.model.kind == "moe" and cfg.model.top_k == 2  # the original is untouched
    assert base.model.expert_hidden == cfg.model.expert_hidden and base.train == cfg.train and base.data == cfg.data
    run = train_run(base, tiny_dataset())
    assert run.model.gate is None and run.result.params < train_run(cfg, tiny_dataset()).result.params


def test_cpu_threads_default_to_one_and_honour_the_environment(monkeypatch):
    from kamoe_viz.training import configure_cpu_threads

    before = torch.get_num_threads()
    try:
        monkeypatch.delenv("KAMOE_THREADS", raising=False)
        assert configure_cpu_threads() == 1 and torch.get_num_threads() == 1
        monkeypatch.setenv("KAMOE_THREADS", "2")
        assert configure_cpu_threads() == 2 and torch.get_num_threads() == 2
        assert configure_cpu_threads(1) == 1  # an explicit count wins over the environment
        for bad in ("two", "0", "-3"):
            monkeypatch.setenv("KAMOE_THREADS", bad)
            with pytest.raises(ValidationError, match="KAMOE_THREADS"):
                configure_cpu_threads()
        with pytest.raises(ValidationError, match="whole number"):
            configure_cpu_threads(0)
    finally:
        torch.set_num_threads(before)


def test_large_batches_get_more_threads_unless_told_otherwise(monkeypatch):
    from kamoe_viz.training import configure_cpu_threads
    from kamoe_viz.training.devices import LARGE_BATCH, _usable_cores

    before = torch.get_num_threads()
    try:
        monkeypatch.delenv("KAMOE_THREADS", raising=False)
        assert configure_cpu_threads(batch_size=LARGE_BATCH - 1) == 1
        assert configure_cpu_threads(batch_size=LARGE_BATCH) == max(1, min(4, _usable_cores()))
        monkeypatch.setenv("KAMOE_THREADS", "1")
        assert configure_cpu_threads(batch_size=4096) == 1  # the environment wins
        assert configure_cpu_threads(3, batch_size=4096) == 3  # and an explicit count over both
    finally:
        torch.set_num_threads(before)
