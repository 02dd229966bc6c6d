"""CUDA: the same layers, model, optimiser and training on a GPU. Skipped where torch sees no CUDA device (CI and
the 2-core development machine); run on a lent GPU machine with ``python -m pytest tests/test_cuda.py``."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from test_nn_fast import autograd_kan, exact_layer
from test_training import same_state, state_of, tiny_config, tiny_dataset

from kamoe_viz.config import ModelConfig
from kamoe_viz.nn import KAMoE, KANLinear
from kamoe_viz.nn.fast.cuda_graph import ENV_SWITCH
from kamoe_viz.nn.fast.optim import FastAdam
from kamoe_viz.runstore import RunStore
from kamoe_viz.training import Trainer, available_devices, evaluate, resolve_device, train_run
from kamoe_viz.training import step as step_module

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device here")
CUDA = torch.device("cuda")


def test_auto_picks_cuda() -> None:
    assert "cuda" in available_devices()
    assert resolve_device("auto").type == "cuda"


@pytest.mark.parametrize("order", [1, 3])
@pytest.mark.parametrize("base", ["silu", "elu", "relu"])
def test_fused_kan_on_cuda_equals_autograd_and_cpu(order: int, base: str) -> None:
    torch.manual_seed(order)
    layer = exact_layer(6, 4, grid_size=5, spline_order=order, grid_range=(-1.0, 1.5), base_activation=base, bias=True)
    x_cpu = torch.randn(300, 6, dtype=torch.float64) * 1.5
    weights = torch.randn(300, 4, dtype=torch.float64)
    grads = {}
    for device in ("cpu", "cuda"):
        layer_d = copy.deepcopy(layer).to(device)
        x = x_cpu.to(device).clone().requires_grad_()
        x_ref = x_cpu.to(device).clone().requires_grad_()
        out = layer_d(x)
        (out * weights.to(device)).sum().backward()
        fast = [x.grad] + [p.grad.clone() for p in layer_d.parameters()]
        layer_d.zero_grad()
        ref = autograd_kan(layer_d, x_ref)
        (ref * weights.to(device)).sum().backward()
        slow = [x_ref.grad] + [p.grad for p in layer_d.parameters()]
        torch.testing.assert_close(out, ref, atol=1e-10, rtol=1e-10)
        for a, b in zip(fast, slow):
            torch.testing.assert_close(a, b, atol=1e-9, rtol=1e-9)
        grads[device] = [out.detach().cpu()] + [g.cpu() for g in fast]
    for a, b in zip(grads["cpu"], grads["cuda"]):
        torch.testing.assert_close(a, b, atol=1e-9, rtol=1e-9)


def test_kan_grid_update_on_cuda_equals_cpu() -> None:
    torch.manual_seed(0)
    layer = KANLinear(5, 3, grid_size=5)
    x = torch.randn(400, 5) * 0.7
    on_gpu = copy.deepcopy(layer).to(CUDA)
    layer.update_grid(x)
    on_gpu.update_grid(x.to(CUDA))
    assert on_gpu.grid.device.type == "cuda"
    torch.testing.assert_close(on_gpu.grid.cpu(), layer.grid)
    torch.testing.assert_close(on_gpu(x.to(CUDA)).detach().cpu(), layer(x).detach(), atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize(
    "gate,expert,seq",
    [
        ("grkan", "mlp", False),
        ("grn", "kan", False),
        ("linear", "mlp", False),
        ("grkan", "lstm", True),
        ("grn", "gru", True),
    ],
)
def test_model_forward_on_cuda_equals_cpu(gate: str, expert: str, seq: bool) -> None:
    torch.manual_seed(1)
    cfg = ModelConfig(gate=gate, expert=expert, expert_hidden=(16,), n_experts=3).validate()
    model = KAMoE(cfg, 4, 1, seq_len=7 if seq else None).eval()
    x = torch.randn(64, 7, 4) if seq else torch.randn(64, 4)
    on_cpu = model(x)
    on_gpu = copy.deepcopy(model).to(CUDA)(x.to(CUDA))
    for name in ("prediction", "gate_weights", "expert_outputs"):
        torch.testing.assert_close(getattr(on_gpu, name).cpu(), getattr(on_cpu, name), atol=1e-4, rtol=1e-4)


def test_fast_adam_on_cuda_matches_torch_adam() -> None:
    torch.manual_seed(0)
    model = KAMoE(ModelConfig(gate="grkan", expert="kan", expert_hidden=(6,)).validate(), 4, 1).to(CUDA)
    twin = copy.deepcopy(model)
    ours = FastAdam(model.parameters(), lr=1e-2, weight_decay=1e-3)
    theirs = torch.optim.Adam(twin.parameters(), lr=1e-2, weight_decay=1e-3)
    X, y = torch.randn(64, 4, device=CUDA), torch.randn(64, 1, device=CUDA)
    for _ in range(10):
        for m, opt in ((model, ours), (twin, theirs)):
            opt.zero_grad(set_to_none=True)
            F.mse_loss(m(X).prediction, y).backward()
            opt.step()
    for a, b in zip(model.parameters(), twin.parameters()):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("gate,expert", [("grkan", "mlp"), ("grn", "kan")])
def test_training_on_cuda_learns_like_cpu_and_saves(gate: str, expert: str, tmp_path) -> None:
    ds = tiny_dataset(n=600)
    on_gpu = train_run(tiny_config(gate, expert, epochs=25, device="cuda", lr=5e-3), ds)
    on_cpu = train_run(tiny_config(gate, expert, epochs=25, device="cpu", lr=5e-3), ds)
    assert next(on_gpu.model.parameters()).device.type == "cpu"  # handed back on the CPU, like every run
    r2_gpu = evaluate(on_gpu.model, ds, "test")["r2"]
    r2_cpu = evaluate(on_cpu.model, ds, "test")["r2"]
    assert r2_gpu > 0.8 and abs(r2_gpu - r2_cpu) < 0.05, (r2_gpu, r2_cpu)
    store = RunStore(tmp_path)
    loaded = store.load(store.save(on_gpu))
    x = torch.from_numpy(ds.X_test)
    torch.testing.assert_close(loaded.model(x).prediction, on_gpu.model(x).prediction)


def test_cli_trains_on_cuda(tmp_path) -> None:
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "kamoe_viz",
            "train",
            "--dataset",
            "regimes",
            "--epochs",
            "3",
            "--device",
            "cuda",
            "--quiet",
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "KAMOE_RUNS_DIR": str(tmp_path)},
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    line = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")][-1]
    facts = json.loads(line)
    assert facts["device"] == "cuda" and facts["stopped_reason"] == "completed" and np.isfinite(facts["r2"])


# ----- CUDA graphs: full batches replay one captured step ------------------------------------------------------------
def trainer_for(cfg, ds, monkeypatch, graphs: bool) -> Trainer:
    monkeypatch.setenv(ENV_SWITCH, "1" if graphs else "0")
    torch.manual_seed(cfg.train.seed)
    from kamoe_viz.nn import build_model

    return Trainer(build_model(cfg.model, ds), ds, cfg.train)


@pytest.mark.parametrize("gate,expert", [("grkan", "mlp"), ("grn", "kan"), ("linear", "mlp")])
def test_graphed_training_equals_eager_training(gate: str, expert: str, monkeypatch) -> None:
    ds = tiny_dataset(n=250)  # 250 rows at batch 32: 7 full batches (graph) and a short one (eager)
    cfg = tiny_config(gate, expert, epochs=6, device="cuda", lr=5e-3, lr_patience=1, lr_factor=0.5)
    runs = {}
    for graphs in (False, True):
        trainer = trainer_for(cfg, ds, monkeypatch, graphs)
        assert trainer.use_graphs is graphs
        trainer.run_epochs(6)
        result = trainer.finish()
        assert trainer.graph_error is None
        runs[graphs] = (result, state_of(trainer.model))
    (eager, w_eager), (graphed, w_graphed) = runs[False], runs[True]
    np.testing.assert_allclose(graphed.history["train_loss"], eager.history["train_loss"], rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(graphed.history["lr"], eager.history["lr"])
    for key in w_eager:
        torch.testing.assert_close(w_graphed[key], w_eager[key], atol=1e-4, rtol=1e-3)


def test_a_step_that_cannot_be_captured_falls_back_to_eager(monkeypatch) -> None:
    ds = tiny_dataset()
    cfg = tiny_config(epochs=3, device="cuda")
    trainer = trainer_for(cfg, ds, monkeypatch, True)
    plain = trainer.stepper.device_step

    def syncing_step(xb, yb):
        out = plain(xb, yb)
        float(out[0])  # a host sync: not allowed while capturing
        return out

    trainer.stepper.device_step = syncing_step
    trainer.run_epochs(3)
    result = trainer.finish()
    assert not trainer.use_graphs and trainer.graph_error
    assert result.stopped_reason == "completed" and np.isfinite(result.metrics["r2"])


def test_graphed_divergence_keeps_the_best_weights(monkeypatch) -> None:
    ds = tiny_dataset()
    cfg = tiny_config(epochs=10, device="cuda")
    trainer = trainer_for(cfg, ds, monkeypatch, True)
    best: dict[int, dict[str, torch.Tensor]] = {}

    def on_epoch(info) -> None:
        if info.best_epoch == info.epoch:
            best[info.epoch] = state_of(trainer.model)
        if info.epoch == 3:
            trainer._X[5, 1] = float("inf")

    trainer.on_epoch = on_epoch
    while not trainer.done:
        trainer.run_epochs(2)
    result = trainer.finish()
    assert trainer.use_graphs and trainer.graph_error is None
    assert result.stopped_reason == "diverged" and result.epochs_run == 3 and "epoch 4" in result.message
    assert same_state(state_of(trainer.model), best[result.best_epoch])
    # a huge learning rate: the first bad step is skipped on the device, the initial weights are kept
    huge = trainer_for(tiny_config(epochs=5, lr=10.0, device="cuda"), ds, monkeypatch, True)
    initial = state_of(huge.model)
    huge.run_epochs(5)
    result = huge.finish()
    assert result.stopped_reason == "diverged" and "initial weights" in result.message
    assert same_state(state_of(huge.model), initial)
    # exploding norm without clipping diverges; with clipping it trains on
    monkeypatch.setattr(step_module, "GRAD_NORM_LIMIT", 1e-9)
    assert train_run(tiny_config(epochs=3, device="cuda"), ds).result.stopped_reason == "diverged"
    assert train_run(tiny_config(epochs=3, device="cuda", max_grad_norm=1.0), ds).result.stopped_reason == "completed"
