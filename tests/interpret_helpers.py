"""Tiny trained models for the interpretation, chart and page tests (shared, built once per test session)."""

from __future__ import annotations

import functools

import numpy as np
import torch

torch.set_num_threads(1)  # 2 shared CPU cores: one thread per test process is much faster than fighting over two

from kamoe_viz.config import ModelConfig, RunConfig, TrainConfig
from kamoe_viz.data.base import Dataset
from kamoe_viz.training import train_run


def toy_regimes(n: int = 600, seed: int = 0, task: str = "regression") -> Dataset:
    """2-D inputs, three regimes by region of x0, a different target function per regime."""
    rng = np.random.default_rng(seed)
    raw = rng.uniform(-3, 3, size=(n, 2)) * np.array([1.0, 2.0]) + np.array([0.5, 10.0])
    regime = np.digitize(raw[:, 0], [-0.5, 1.5])
    funcs = [lambda x: 2 * x[:, 1] / 2, lambda x: -3 * x[:, 0], lambda x: np.sin(x[:, 1])]
    y = np.select([regime == r for r in range(3)], [f(raw - [0.5, 10.0]) for f in funcs])
    y = y + rng.normal(0, 0.05, n)
    mean, std = raw[: n // 2].mean(0), raw[: n // 2].std(0)
    X = ((raw - mean) / std).astype(np.float32)
    a, b = int(n * 0.6), int(n * 0.8)
    if task == "classification":
        labels = regime.astype(np.int64)
        ys = (labels[:a], labels[a:b], labels[b:])
        extra = dict(class_names=["low", "mid", "high"], y_mean=0.0, y_std=1.0)
    else:
        ym, ys_ = float(y[:a].mean()), float(y[:a].std())
        yy = ((y - ym) / ys_).astype(np.float32).reshape(-1, 1)
        ys = (yy[:a], yy[a:b], yy[b:])
        extra = dict(y_mean=ym, y_std=ys_)
    return Dataset(
        name="toy",
        task=task,
        feature_names=["x0", "x1"],
        target_name="y",
        X_train=X[:a],
        y_train=ys[0],
        X_val=X[a:b],
        y_val=ys[1],
        X_test=X[b:],
        y_test=ys[2],
        regimes_train=regime[:a].astype(np.int64),
        regimes_val=regime[a:b].astype(np.int64),
        regimes_test=regime[b:].astype(np.int64),
        regime_names=["left", "middle", "right"],
        x_mean=mean.astype(np.float32),
        x_std=std.astype(np.float32),
        **extra,
    )


def toy_sequences(n: int = 300, steps: int = 6, seed: int = 0) -> Dataset:
    """Windows of a 2-feature series whose dynamics switch between two regimes."""
    rng = np.random.default_rng(seed)
    length = n + steps
    regime = (np.arange(length) // 50) % 2
    series = np.cumsum(rng.normal(0, 1, size=(length, 2)), axis=0) * 0.1
    series[:, 1] = np.where(regime == 1, np.sin(np.arange(length) / 3), series[:, 1])
    X = np.stack([series[i : i + steps] for i in range(n)]).astype(np.float32)
    y = series[steps : steps + n, 0:1].astype(np.float32)
    reg = regime[steps - 1 : steps - 1 + n].astype(np.int64)
    a, b = int(n * 0.6), int(n * 0.8)
    return Dataset(
        name="toyseq",
        task="regression",
        feature_names=["a", "b"],
        target_name="a_next",
        X_train=X[:a],
        y_train=y[:a],
        X_val=X[a:b],
        y_val=y[a:b],
        X_test=X[b:],
        y_test=y[b:],
        regimes_train=reg[:a],
        regimes_val=reg[a:b],
        regimes_test=reg[b:],
        regime_names=["calm", "wave"],
        is_sequence=True,
        x_mean=np.zeros(2, np.float32),
        x_std=np.ones(2, np.float32),
    )


@functools.cache
def tiny_run(
    gate: str = "grkan",
    expert: str = "mlp",
    activation: str = "sigmoid",
    task: str = "regression",
    sequence: bool = False,
    epochs: int = 40,
):
    """A real TrainedRun (kamoe_viz.training.train_run) of a tiny model on a toy dataset, trained in about a
    second; cached per argument set for the whole test session (treat it as read-only)."""
    dataset = toy_sequences() if sequence else toy_regimes(task=task)
    config = RunConfig(
        model=ModelConfig(
            gate=gate, expert=expert, gate_activation=activation, n_experts=3, expert_hidden=(8,), gate_hidden=6
        ),
        train=TrainConfig(epochs=epochs, batch_size=64, lr=0.01, early_stopping=0, seed=0, device="cpu"),
    )
    config.data.name = dataset.name
    return train_run(config, dataset=dataset)


def tiny_model(
    gate: str = "grkan",
    expert: str = "mlp",
    activation: str = "sigmoid",
    task: str = "regression",
    sequence: bool = False,
):
    """(model, dataset) of :func:`tiny_run`."""
    run = tiny_run(gate, expert, activation, task, sequence)
    return run.model, run.dataset


# ----- AppTest --------------------------------------------------------------------------------------------------
def open_page(page: str, run=None, timeout: float = 120):
    """An AppTest of the whole app (app.py + navigation) showing ``page``, with ``run`` as the current run."""
    import _app_support
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(_app_support.APP, default_timeout=timeout)
    if run is not None:
        at.session_state["current_run"] = run
    return at.switch_page(page).run()


def rendered_charts(at) -> list:
    return list(at.get("vega_lite_chart")) + list(at.get("arrow_vega_lite_chart"))


def assert_clean(at, where: str = "") -> None:
    assert not at.exception, f"{where}: {[e.value for e in at.exception]}"
    assert not at.error, f"{where}: {[e.value for e in at.error]}"


def run_cache(at, run) -> dict:
    """This session's cached interpretation results of ``run``."""
    from kamoe_viz_app.state import RUN_CACHE, run_key

    return at.session_state[RUN_CACHE][run_key(run)] if RUN_CACHE in at.session_state else {}
