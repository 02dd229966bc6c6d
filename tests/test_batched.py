"""Batched multi-seed training: each seed of a stacked run equals training that seed alone (same init, same
batches) to float tolerance, for every gate family, MLP and KAN experts, the plain model, classification with top-k,
per-seed early stopping and clipping; the unstacked runs save, load and predict like any other run."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from kamoe_viz.config import DataConfig, ModelConfig, RunConfig, TrainConfig
from kamoe_viz.data import load_dataset
from kamoe_viz.errors import ValidationError
from kamoe_viz.nn.stacked import stacked_forward
from kamoe_viz.training import predict, train_run
from kamoe_viz.training.batched import train_batched, unsupported_reason

RTOL = 2e-4  # closed-form gradients and C kernels (single run) vs autograd (stacked): equal to rounding, which
# training amplifies a little each epoch, so a few epochs are compared


def _config(data: DataConfig, epochs: int = 3, **model) -> RunConfig:
    model = {"expert_hidden": (8,), "n_experts": 3, **model}
    return RunConfig(
        data=data,
        model=ModelConfig(**model),
        train=TrainConfig(epochs=epochs, batch_size=32, early_stopping=0, max_grad_norm=1.0, device="cpu"),
    ).validate()


def _seeds(base: RunConfig, seeds=(0, 1, 2)) -> list[RunConfig]:
    out = []
    for s in seeds:
        c = copy.deepcopy(base)
        c.train.seed = s
        out.append(c)
    return out


def _assert_same(batched, alone):
    a, b = batched.result, alone.result
    assert a.epochs_run == b.epochs_run and a.best_epoch == b.best_epoch and a.stopped_reason == b.stopped_reason
    np.testing.assert_allclose(a.history["val_loss"], b.history["val_loss"], rtol=RTOL)
    np.testing.assert_allclose(a.history["train_loss"], b.history["train_loss"], rtol=RTOL)
    np.testing.assert_allclose(a.history["lr"], b.history["lr"], rtol=1e-12)
    for aux in ("balance_loss", "z_loss"):  # NaN for the plain model on both sides
        np.testing.assert_allclose(a.history[aux].astype(float), b.history[aux].astype(float), rtol=RTOL)
    for key, value in b.metrics.items():
        assert a.metrics[key] == pytest.approx(value, rel=RTOL, abs=2e-5), key


REGIMES = DataConfig(name="regimes", options={"n_samples": 400})


@pytest.mark.parametrize(
    "kind,gate,expert,hidden",
    [
        ("moe", "linear", "mlp", (8,)),
        ("moe", "grn", "mlp", (8, 6)),
        ("moe", "grkan", "mlp", (8,)),
        ("moe", "grkan", "kan", (6, 4)),
        ("standard", "grkan", "kan", (6,)),
        ("standard", "linear", "mlp", (8,)),
    ],
)
def test_each_seed_equals_training_it_alone(kind, gate, expert, hidden):
    base = _config(REGIMES, kind=kind, gate=gate, expert=expert, expert_hidden=hidden)
    configs = _seeds(base)
    ds = load_dataset(base.data)
    batched = train_batched(configs, ds)
    for run, config in zip(batched, configs):
        _assert_same(run, train_run(config, dataset=ds))
    # seeds really differ (not one model copied three times)
    assert len({round(r.result.metrics["r2"], 6) for r in batched}) == 3


def test_classification_softmax_top_k_and_plateau_lr():
    base = _config(
        DataConfig(name="moons", options={"n_samples": 300}),
        epochs=4,
        gate="grn",
        gate_activation="softmax",
        routing="topk",
        top_k=2,
    )
    base.train.lr_patience, base.train.lr_factor, base.train.weight_decay = 1, 0.5, 1e-3
    configs = _seeds(base.validate(), (3, 7))
    ds = load_dataset(base.data)
    for run, config in zip(train_batched(configs, ds), configs):
        _assert_same(run, train_run(config, dataset=ds))


def test_seeds_stop_early_on_their_own():
    base = _config(REGIMES, epochs=40, gate="linear")
    base.train.early_stopping, base.train.lr = 2, 0.05
    configs = _seeds(base.validate(), (0, 1, 2, 3))
    ds = load_dataset(base.data)
    batched = train_batched(configs, ds)
    alone = [train_run(c, dataset=ds) for c in configs]
    assert [r.result.epochs_run for r in batched] == [r.result.epochs_run for r in alone]
    assert any(r.result.stopped_reason == "early_stopping" for r in alone)
    for run, ref in zip(batched, alone):  # compare the first epochs (rounding grows with every epoch)
        n = min(5, len(ref.result.history))
        np.testing.assert_allclose(run.result.history["val_loss"][:n], ref.result.history["val_loss"][:n], rtol=1e-3)


def test_stacked_forward_equals_the_module():
    base = _config(REGIMES, gate="grkan", expert="kan", expert_hidden=(6, 4), routing="topk", top_k=2)
    ds = load_dataset(base.data)
    models = []
    for s in (0, 1):
        torch.manual_seed(s)
        from kamoe_viz.nn import build_model

        models.append(build_model(base.model, ds))
    x = torch.as_tensor(ds.X_val[:50], dtype=torch.float32)
    params = {
        n: torch.stack([dict(m.named_parameters())[n].detach() for m in models])
        for n, _ in models[0].named_parameters()
    }
    pred, weights, _ = stacked_forward(models[0], params, x)
    for s, m in enumerate(models):
        out = m(x)
        torch.testing.assert_close(pred[s], out.prediction, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(weights[s], out.gate_weights, rtol=1e-5, atol=1e-6)


def test_unstacked_runs_save_load_and_predict(tmp_path):
    from kamoe_viz.runstore import RunStore

    base = _config(REGIMES, gate="grkan")
    ds = load_dataset(base.data)
    runs = train_batched(_seeds(base, (0, 1)), ds)
    store = RunStore(tmp_path)
    loaded = store.load(store.save(runs[1]))
    X = ds.X_test[:20]
    np.testing.assert_allclose(
        predict(loaded.model, X)["prediction"], predict(runs[1].model, X)["prediction"], rtol=1e-6
    )
    assert loaded.config.train.seed == 1


def test_what_trains_one_seed_at_a_time_is_named():
    series = RunConfig(
        data=DataConfig(name="regimes"), model=ModelConfig(expert="lstm"), train=TrainConfig(device="cpu")
    )
    assert "LSTM" in unsupported_reason(series)
    dropout = _config(REGIMES, dropout=0.2)
    assert "dropout" in unsupported_reason(dropout)
    with pytest.raises(ValidationError, match="dropout"):
        train_batched(_seeds(dropout, (0, 1)))
    mixed = _seeds(_config(REGIMES), (0, 1))
    mixed[1].train.lr = 0.01
    with pytest.raises(ValidationError, match="differ only in train.seed"):
        train_batched(mixed)
    switch = _config(REGIMES, routing="switch")
    assert "switch" in unsupported_reason(switch)
    assert "shared" in unsupported_reason(_config(REGIMES, shared_experts=1))
