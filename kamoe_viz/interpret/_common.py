"""Shared helpers of the interpretation functions: reference sets, batched forward passes, names, metrics.

Everything here works on a trained :class:`~kamoe_viz.nn.moe.KAMoE` and a :class:`~kamoe_viz.data.base.Dataset`
through their public interface only (``model(x)``, ``model.gate_weights(x)``, ``model.kan_layers()``...).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch

from kamoe_viz.errors import ValidationError
from kamoe_viz.nn.moe import KAMoE

if TYPE_CHECKING:
    from kamoe_viz.data.base import Dataset

DEFAULT_REFERENCE_ROWS = 2000
SPLITS = ("train", "val", "test")


def expert_names(n_experts: int) -> list[str]:
    return [f"expert {e}" for e in range(n_experts)]


def check_split(split: str) -> str:
    if split not in SPLITS:
        raise ValidationError("split", split, "must be one of train, val, test")
    return split


def reference_indices(n_rows: int, max_rows: int | None, seed: int = 0) -> np.ndarray:
    """Sorted indices of at most ``max_rows`` rows drawn without replacement (all rows when small enough).

    Sorted so that order-dependent views (sequences over time) keep the split's order.
    """
    if max_rows is None or n_rows <= max_rows:
        return np.arange(n_rows)
    if max_rows < 1:
        raise ValidationError("max_rows", max_rows, "must be a positive number of rows")
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(n_rows, size=max_rows, replace=False))


def reference_set(
    dataset: Dataset, split: str = "train", max_rows: int | None = DEFAULT_REFERENCE_ROWS, seed: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, np.ndarray]:
    """(X, y, regimes, row indices) of a fixed subsample of a split (same rows every call for the same seed)."""
    X, y, regimes = dataset.split(check_split(split))
    idx = reference_indices(len(X), max_rows, seed)
    reg = None if regimes is None else np.asarray(regimes)[idx]
    return X[idx], y[idx], reg, idx


def model_dtype(model: torch.nn.Module) -> torch.dtype:
    for p in model.parameters():
        return p.dtype
    return torch.float32


def to_tensor(model: torch.nn.Module, X: np.ndarray) -> torch.Tensor:
    device = next(model.parameters()).device
    return torch.as_tensor(np.asarray(X), dtype=model_dtype(model), device=device)


@dataclass
class Forward:
    """A model's outputs on many rows as numpy arrays; sequence outputs (B, T, ...) are kept as they come."""

    prediction: np.ndarray  # (N, O) or (N, T, O)
    gate_weights: np.ndarray  # (N, E) or (N, T, E)
    expert_outputs: np.ndarray  # (N, O, E) or (N, T, O, E)


@torch.no_grad()
def forward_numpy(model: torch.nn.Module, X: np.ndarray, batch_size: int = 4096) -> Forward:
    """model(x) in batches, in eval mode, returned as numpy."""
    was_training = model.training
    model.eval()
    preds, weights, outs = [], [], []
    try:
        for start in range(0, len(X), batch_size):
            out = model(to_tensor(model, X[start : start + batch_size]))
            preds.append(out.prediction.cpu().numpy())
            weights.append(out.gate_weights.cpu().numpy())
            outs.append(out.expert_outputs.cpu().numpy())
    finally:
        model.train(was_training)
    if not preds:
        raise ValidationError("rows", 0, "need at least one row to run the model on")
    return Forward(np.concatenate(preds), np.concatenate(weights), np.concatenate(outs))


@torch.no_grad()
def gate_weights_numpy(model: KAMoE, X: np.ndarray, batch_size: int = 8192) -> np.ndarray:
    """Only the gate weights (N, E) or (N, T, E), in batches."""
    was_training = model.training
    model.eval()
    try:
        parts = [
            model.gate_weights(to_tensor(model, X[s : s + batch_size])).cpu().numpy()
            for s in range(0, len(X), batch_size)
        ]
    finally:
        model.train(was_training)
    return np.concatenate(parts)


def flatten_time(array: np.ndarray, trailing: int) -> np.ndarray:
    """Merge every leading axis but the last ``trailing`` ones: (N, T, E) -> (N*T, E)."""
    array = np.asarray(array)
    return array.reshape((-1,) + array.shape[array.ndim - trailing :])


def rows_of(regimes: np.ndarray | None, n_rows: int) -> np.ndarray | None:
    """Regime labels matched to ``n_rows`` flattened rows (per-window labels are repeated over time steps)."""
    if regimes is None:
        return None
    regimes = np.asarray(regimes).reshape(-1)
    if len(regimes) == n_rows:
        return regimes
    if len(regimes) and n_rows % len(regimes) == 0:
        return np.repeat(regimes, n_rows // len(regimes))
    return None


def feature_names(dataset: Dataset) -> list[str]:
    names = list(getattr(dataset, "feature_names", []) or [])
    return names if len(names) == dataset.n_features else [f"x{i}" for i in range(dataset.n_features)]


def raw_to_scaled(dataset: Dataset, raw: np.ndarray, columns: list[int] | None = None) -> np.ndarray:
    """Inverse of ``dataset.unscale_X`` for some feature columns (all when None)."""
    raw = np.asarray(raw, dtype=np.float64)
    if dataset.x_mean is None or dataset.x_std is None:
        return raw
    mean = np.asarray(dataset.x_mean, dtype=np.float64).reshape(-1)
    std = np.asarray(dataset.x_std, dtype=np.float64).reshape(-1)
    if columns is not None:
        mean, std = mean[columns], std[columns]
    return (raw - mean) / std


def scaled_to_raw(dataset: Dataset, scaled: np.ndarray, columns: list[int] | None = None) -> np.ndarray:
    scaled = np.asarray(scaled, dtype=np.float64)
    if dataset.x_mean is None or dataset.x_std is None:
        return scaled
    mean = np.asarray(dataset.x_mean, dtype=np.float64).reshape(-1)
    std = np.asarray(dataset.x_std, dtype=np.float64).reshape(-1)
    if columns is not None:
        mean, std = mean[columns], std[columns]
    return scaled * std + mean


# ----- metrics ---------------------------------------------------------------------------------------------------
def regression_metrics(pred: np.ndarray, target: np.ndarray, y_std: float = 1.0) -> dict[str, float]:
    """R² and RMSE; RMSE in the target's original units (scaled values times ``y_std``)."""
    pred = np.asarray(pred, dtype=np.float64).reshape(-1)
    target = np.asarray(target, dtype=np.float64).reshape(-1)
    if len(target) == 0:
        return {"r2": float("nan"), "rmse": float("nan")}
    sse = float(np.sum((pred - target) ** 2))
    sst = float(np.sum((target - target.mean()) ** 2))
    r2 = 1.0 - sse / sst if sst > 0 else float("nan")
    return {"r2": r2, "rmse": float(np.sqrt(sse / len(target))) * float(abs(y_std))}


def softmax_np(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def classification_metrics(logits: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """Accuracy and log loss (natural log) from logits (N, C) and integer labels (N,)."""
    logits = np.asarray(logits, dtype=np.float64)
    labels = np.asarray(labels).reshape(-1).astype(int)
    if len(labels) == 0:
        return {"accuracy": float("nan"), "log_loss": float("nan")}
    probs = softmax_np(logits)
    accuracy = float(np.mean(probs.argmax(axis=1) == labels))
    picked = np.clip(probs[np.arange(len(labels)), labels], 1e-12, 1.0)
    return {"accuracy": accuracy, "log_loss": float(-np.mean(np.log(picked)))}


def task_metrics(dataset: Dataset, pred: np.ndarray, target: np.ndarray) -> dict[str, float]:
    """The task's metrics (regression: r2, rmse in original units; classification: accuracy, log_loss)."""
    if dataset.task == "classification":
        return classification_metrics(flatten_time(pred, 1), target)
    return regression_metrics(pred, target, dataset.y_std)


def primary_metric(dataset: Dataset) -> tuple[str, bool]:
    """(name, higher_is_better) of the metric shown first for this task."""
    return ("accuracy", True) if dataset.task == "classification" else ("rmse", False)


def model_loss(dataset: Dataset, pred: np.ndarray, target: np.ndarray) -> float:
    """The training loss on scaled targets: MSE (regression) or cross-entropy (classification)."""
    if dataset.task == "classification":
        return classification_metrics(flatten_time(pred, 1), target)["log_loss"]
    pred = np.asarray(pred, dtype=np.float64).reshape(-1)
    target = np.asarray(target, dtype=np.float64).reshape(-1)
    return float(np.mean((pred - target) ** 2))
