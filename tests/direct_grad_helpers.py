"""What the closed-form gradient tests share: a small synthetic dataset, autograd and direct gradients on the same
rows, and the kernel choice (native C kernel, then the PyTorch path) the ``built`` / ``kernel`` fixtures wrap."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from kamoe_viz.data.base import Dataset
from kamoe_viz.nn.fast import native
from kamoe_viz.nn.fast.direct_grad import DirectGradients
from kamoe_viz.training.evaluation import task_loss


def native_library():
    """The native KAN kernel, built (skips the test without a C compiler); the ``built`` fixture of the tests."""
    if native._compiler() is None:
        pytest.skip("no C compiler on this machine")
    assert native.build().state == "ready"
    return native.library()


def kernel_choice(request):
    """KAN layers on the native kernel, then on the PyTorch path (the kernel is None): the ``kernel`` fixture."""
    if request.param == "pytorch":
        return None
    return request.getfixturevalue("built")


def dataset(
    task: str = "regression",
    features: int = 4,
    rows: int = 96,
    seq_len: int | None = None,
    classes: int = 3,
    seed: int = 0,
) -> Dataset:
    rng = np.random.default_rng(seed)
    shape = (rows, features) if seq_len is None else (rows, seq_len, features)
    X = rng.normal(size=shape).astype(np.float32) * 1.5  # some inputs beyond the KAN grid range
    if task == "classification":
        y = rng.integers(0, classes, size=rows).astype(np.int64)
    else:
        y = rng.normal(size=(rows, 1)).astype(np.float32)
    cut = rows * 3 // 4
    return Dataset(
        name="t",
        task=task,
        feature_names=[f"x{i}" for i in range(features)],
        target_name="y",
        X_train=X[:cut],
        y_train=y[:cut],
        X_val=X[cut:],
        y_val=y[cut:],
        X_test=X[cut:],
        y_test=y[cut:],
        class_names=[f"c{i}" for i in range(classes)] if task == "classification" else None,
        is_sequence=seq_len is not None,
        x_mean=np.zeros(features),
        x_std=np.ones(features),
        y_mean=0.0,
        y_std=1.0,
    )


def autograd_and_direct(model, data: Dataset, lib, rows: int = 24):
    """(loss, grads) by autograd and by DirectGradients for the first rows of the training split."""
    x = torch.as_tensor(data.X_train[:rows])
    y = torch.as_tensor(data.y_train[:rows])
    model.train()
    params = list(model.parameters())
    model.zero_grad()
    with native.use(lib is not None):
        loss = task_loss(data.task, model(x).prediction, y)
    loss.backward()
    expected = (loss.detach(), [p.grad.clone() for p in params])
    for p in params:  # garbage in every gradient: the direct step must overwrite each of them
        p.grad.fill_(float("nan"))
    direct = DirectGradients(model, data.task, lib)
    with native.use(lib is not None):  # nothing in the step may depend on the switch: it holds its own path
        got = direct.step(x, y)
    assert got is not None
    return expected, (got, [p.grad.clone() for p in params])


def trainer_path(kernel, monkeypatch) -> None:
    """Trainers built from here on see the kernel the test runs with (none: the PyTorch path)."""
    if kernel is None:
        monkeypatch.setattr(native, "library", lambda: None)


def assert_same(expected, got, tol: float = 2e-5):
    (loss_a, grads_a), (loss_d, grads_d) = expected, got
    torch.testing.assert_close(loss_d, loss_a, rtol=tol, atol=tol)
    for a, d in zip(grads_a, grads_d):
        torch.testing.assert_close(d, a, rtol=tol, atol=tol * max(1.0, a.abs().max().item()))
