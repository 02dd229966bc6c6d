"""The native C kernel for KAN layers gives the PyTorch path's outputs and gradients, is optional (no compiler, a
failed build or KAMOE_NATIVE=0 leave the PyTorch path working), never makes a caller wait for a build, and a
training run keeps the path it started on."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from kamoe_viz.config import ModelConfig, TrainConfig
from kamoe_viz.data.base import Dataset
from kamoe_viz.nn import KANLinear, build_model
from kamoe_viz.nn.fast import native
from kamoe_viz.training import fit
from kamoe_viz.training.trainer import Trainer

ROOT = Path(__file__).resolve().parents[1]
needs_kernel = pytest.mark.skipif(native._compiler() is None, reason="no C compiler on this machine")


@pytest.fixture(scope="module")
def kernel():
    if native._compiler() is None:
        pytest.skip("no C compiler on this machine")
    status = native.build()
    assert status.state == "ready", str(status)  # a compiler is here, so the build must work
    return native.library()


def both_paths(layer: KANLinear, x: torch.Tensor, weights: torch.Tensor):
    """(output, grads) through the kernel and through the PyTorch path, for loss sum(layer(x) * weights)."""
    results = []
    for use_kernel in (True, False):
        layer.zero_grad()
        xi = x.detach().clone().requires_grad_()
        with native.use(use_kernel):
            out = layer(xi)
        expected = "NativeKANFunctionBackward" if use_kernel else "UniformKANFunctionBackward"
        assert type(out.grad_fn).__name__ == expected
        (out * weights).sum().backward()
        results.append((out.detach(), [xi.grad] + [p.grad.clone() for p in layer.parameters()]))
    return results


def assert_same(native_result, torch_result, tol=2e-5):
    (out_n, grads_n), (out_t, grads_t) = native_result, torch_result
    scale = max(1.0, out_t.abs().max().item())
    torch.testing.assert_close(out_n, out_t, atol=tol * scale, rtol=tol)
    for a, b in zip(grads_n, grads_t):
        torch.testing.assert_close(a, b, atol=tol * max(1.0, b.abs().max().item()), rtol=tol)


@pytest.mark.parametrize("order", [1, 2, 3, 4, 5])
@pytest.mark.parametrize("base", ["silu", "relu", "elu", "identity"])
# narrow (dot products), wide (updates over outputs), and wide in register tiles of 64 outputs plus a remainder
@pytest.mark.parametrize("out_features", [3, 40, 150])
def test_kernel_equals_pytorch_path(kernel, order, base, out_features):
    torch.manual_seed(order * 7 + out_features)
    layer = KANLinear(
        9,
        out_features,
        grid_size=4,
        spline_order=order,
        grid_range=(-1.5, 2.0),
        base_activation=base,
        bias=out_features == 3,
    )
    with torch.no_grad():
        layer.spline_weight.normal_()
        if layer.bias is not None:
            layer.bias.normal_()
    # inside, far outside, and exactly on the knots (where the pieces switch)
    x = torch.cat([torch.randn(50, 9) * 2, layer.grid[:, :9].t().clone(), torch.full((1, 9), 1e6)])
    if order == 1:  # piecewise linear: at a knot either one-sided derivative is right; compare off the knots
        x = torch.cat([x[:50], x[-1:]])
    weights = torch.randn(x.shape[0], out_features)
    assert_same(*both_paths(layer, x, weights))


@needs_kernel
@settings(max_examples=25, deadline=None)
@given(
    rows=st.integers(1, 70),
    inputs=st.integers(1, 20),
    outputs=st.integers(1, 140),
    grid=st.integers(1, 8),
    order=st.integers(1, 5),
    spread=st.floats(0.1, 5.0),
    seed=st.integers(0, 2**16),
)
def test_kernel_equals_pytorch_path_on_any_shape(rows, inputs, outputs, grid, order, spread, seed):
    native.build()
    torch.manual_seed(seed)
    layer = KANLinear(inputs, outputs, grid_size=grid, spline_order=order)
    x = torch.randn(rows, inputs) * spread
    assert_same(*both_paths(layer, x, torch.randn(rows, outputs)))


def test_kernel_after_a_grid_update_and_on_nan(kernel):
    torch.manual_seed(3)
    layer = KANLinear(4, 3, grid_size=5)
    data = torch.randn(300, 4) * 3 + 1
    layer.update_grid(data)  # per-input grids with different steps and offsets
    assert_same(*both_paths(layer, data[:64], torch.randn(64, 3)))
    x = torch.tensor([[float("nan"), 0.1, 0.2, 0.3]])
    with native.use(True):
        out = layer(x)
    assert torch.isnan(out).all()  # NaN propagates, as in the PyTorch path; no crash from a NaN position


def test_no_grad_evaluation_of_many_rows(kernel):
    torch.manual_seed(4)
    layer = KANLinear(6, 5)
    x = torch.randn(5000, 6)
    with torch.no_grad(), native.use(True):
        fast = layer(x)
    with torch.no_grad(), native.use(False):
        slow = layer(x)
    torch.testing.assert_close(fast, slow, atol=1e-5, rtol=1e-5)


def test_double_precision_and_gpu_tensors_stay_on_the_pytorch_path(kernel):
    layer = KANLinear(3, 2).double()
    out = layer(torch.randn(5, 3, dtype=torch.float64, requires_grad=True))
    assert type(out.grad_fn).__name__ == "UniformKANFunctionBackward"


def small_dataset(rows: int = 256) -> Dataset:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(rows, 4)).astype(np.float32)
    y = (np.sin(X[:, 0]) + X[:, 1] * X[:, 2]).astype(np.float32)[:, None]
    return Dataset(
        name="toy",
        task="regression",
        feature_names=list("abcd"),
        target_name="y",
        X_train=X[:192],
        y_train=y[:192],
        X_val=X[192:],
        y_val=y[192:],
        X_test=X[192:],
        y_test=y[192:],
        x_mean=np.zeros(4),
        x_std=np.ones(4),
        y_mean=0.0,
        y_std=1.0,
    )


def test_a_run_keeps_the_path_it_started_on(kernel, monkeypatch):
    """A kernel that becomes ready mid-run is not used by that run; the next run uses it."""
    dataset = small_dataset()
    config = ModelConfig(gate="grkan", expert="kan", expert_hidden=(5,), n_experts=2)
    seen: list[str] = []
    original = native.kan_forward  # what every use of the kernel calls (autograd functions, direct gradients)

    def counting(*args):
        seen.append("native")
        return original(*args)

    monkeypatch.setattr(native, "kan_forward", counting)
    monkeypatch.setattr(native, "library", lambda: None)  # not built yet when the run starts
    torch.manual_seed(0)
    trainer = Trainer(build_model(config, dataset), dataset, TrainConfig(epochs=2, batch_size=64))
    monkeypatch.undo()  # ... and ready from now on
    monkeypatch.setattr(native, "kan_forward", counting)
    assert not trainer.native_kernel
    trainer.run_epochs(2)
    trainer.finish()
    assert seen == []
    torch.manual_seed(0)
    trainer = Trainer(build_model(config, dataset), dataset, TrainConfig(epochs=1, batch_size=64))
    assert trainer.native_kernel
    trainer.run_epochs(1)
    assert seen


def test_training_results_agree_between_paths(kernel):
    """Same seed, either path: the same training to float rounding (no accuracy cost)."""
    dataset = small_dataset()
    histories = []
    for enabled in (True, False):
        os.environ[native.SWITCH_ENV] = "1" if enabled else "0"
        try:
            torch.manual_seed(0)
            model = build_model(ModelConfig(gate="grkan", expert="mlp", n_experts=3), dataset)
            result = fit(model, dataset, TrainConfig(epochs=3, batch_size=32, seed=0))
        finally:
            os.environ.pop(native.SWITCH_ENV, None)
        histories.append(result.history["train_loss"].to_numpy())
    np.testing.assert_allclose(histories[0], histories[1], rtol=1e-4)


def run_python(code: str, **env: str) -> dict:
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT), **env},
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


TRAIN_TINY = """
import json, torch
from kamoe_viz.nn import KANLinear
from kamoe_viz.nn.fast import native
layer = KANLinear(5, 2)
x = torch.randn(16, 5, requires_grad=True)
first = native.library()  # the first use never waits for a build
status_then = native.status().state
layer(x).sum().backward()  # works on whichever path is available
result = {"first": first is not None, "then": status_then, "grad_ok": bool(torch.isfinite(x.grad).all())}
"""


def test_without_a_compiler_everything_works_on_the_pytorch_path(tmp_path):
    out = run_python(
        TRAIN_TINY + "import time\nfor _ in range(100):\n    if native.status().state != 'building': break\n"
        "    time.sleep(0.05)\nresult['final'] = str(native.status())\nprint(json.dumps(result))",
        CC=str(tmp_path / "no-such-compiler"),
        KAMOE_NATIVE_DIR=str(tmp_path / "cache"),
    )
    assert out["first"] is False and out["then"] == "building" and out["grad_ok"]
    assert "unavailable" in out["final"] and "no-such-compiler" in out["final"]


def test_switched_off_by_the_environment(tmp_path):
    out = run_python(
        TRAIN_TINY + "print(json.dumps(result))", KAMOE_NATIVE="0", KAMOE_NATIVE_DIR=str(tmp_path / "cache")
    )
    assert out == {"first": False, "then": "off", "grad_ok": True}
    assert not (tmp_path / "cache").exists()  # nothing was built


@needs_kernel
def test_first_use_builds_in_the_background_then_loads_from_the_cache(tmp_path):
    cache = str(tmp_path / "cache")
    wait = (
        "import time\nfor _ in range(600):\n    if native.status().state != 'building': break\n"
        "    time.sleep(0.05)\nresult['final'] = native.status().state\n"
        "result['ready'] = native.library() is not None\n"
        "print(json.dumps(result))"
    )
    out = run_python(TRAIN_TINY + wait, KAMOE_NATIVE_DIR=cache)
    assert out["first"] is False and out["then"] == "building" and out["final"] == "ready" and out["ready"]
    assert len(list(Path(cache).glob("kan_kernel-*.so"))) == 1
    again = run_python(TRAIN_TINY + "print(json.dumps(result))", KAMOE_NATIVE_DIR=cache)
    assert again["first"] is True and again["then"] == "ready"  # a cached build loads at once


def test_cli_reports_the_kernel(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "kamoe_viz", "native"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT), "KAMOE_NATIVE": "0"},
        timeout=120,
    )
    assert done.returncode == 0 and "native KAN kernel: off" in done.stdout
    done = subprocess.run(
        [sys.executable, "-m", "kamoe_viz", "native", "--strict"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={
            **os.environ,
            "PYTHONPATH": str(ROOT),
            "CC": str(tmp_path / "none"),
            "KAMOE_NATIVE_DIR": str(tmp_path / "c"),
        },
        timeout=120,
    )
    assert done.returncode == 1 and "unavailable" in done.stdout and "none" in done.stdout


@pytest.mark.parametrize("second_base", ["relu", "silu"])
@pytest.mark.parametrize("shape", [(40, 12), (3, 5, 12)])  # a batch of rows, and every step of a sequence
def test_fused_grkan_gate_equals_its_modules(kernel, second_base, shape):
    """The GRKAN gate's logits as one function (native kernel) against the modules one by one (PyTorch path)."""
    from kamoe_viz.nn.gates import GRKANGate

    torch.manual_seed(11)
    gate = GRKANGate(12, 4, grid_size=5, second_base=second_base)
    with torch.no_grad():  # move the LayerNorm and biases off their defaults, so every gradient is exercised
        for p in (gate.norm.weight, gate.norm.bias, gate.skip.bias, gate.glu.proj.bias):
            p.normal_()
    h = torch.relu(torch.randn(*shape) * 1.5)
    weights = torch.randn(*shape[:-1], 4)
    results = []
    for use_kernel in (True, False):
        gate.zero_grad()
        hi = h.clone().requires_grad_()
        with native.use(use_kernel):
            logits = gate.logits(hi)
        names = {type(logits.grad_fn).__name__, *(type(f).__name__ for f, _ in logits.grad_fn.next_functions if f)}
        assert ("GRKANLogitsFunctionBackward" in names) == use_kernel
        (logits * weights).sum().backward()
        results.append((logits.detach(), [hi.grad] + [p.grad.clone() for p in gate.parameters()]))
    assert_same(*results)


def test_gate_with_active_dropout_runs_module_by_module(kernel):
    from kamoe_viz.nn.gates import GRKANGate

    gate = GRKANGate(6, 3, dropout=0.3).train()
    logits = gate.logits(torch.rand(8, 6, requires_grad=True))
    assert "GRKANLogits" not in type(logits.grad_fn).__name__
    gate.eval()  # dropout is off in evaluation: the fused function applies again
    assert "GRKANLogits" in type(gate.logits(torch.rand(8, 6, requires_grad=True)).grad_fn).__name__
