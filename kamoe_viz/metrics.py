"""Test-set scores in plain numpy: R² and RMSE for regression, accuracy and log-loss for classification.

Regression scores are meant for targets in their original units (un-scale first with ``Dataset.unscale_y``); every
function flattens its inputs, so sequence targets ``(n, T, 1)`` are scored over all time steps.
"""

from __future__ import annotations

import numpy as np

LOG_LOSS_EPS = 1e-15


def _pair(y_true: np.ndarray, y_pred: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    t = np.asarray(y_true, dtype=np.float64).reshape(-1)
    p = np.asarray(y_pred, dtype=np.float64).reshape(-1)
    if t.shape != p.shape:
        raise ValueError(f"y_true has {t.size} values but y_pred has {p.size}")
    return t, p


def r2(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Coefficient of determination, 1 - SS_res / SS_tot (as scikit-learn: 1.0 or 0.0 for a constant target)."""
    t, p = _pair(y_true, y_pred)
    if t.size == 0:
        return float("nan")
    ss_res = float(np.sum((t - p) ** 2))
    ss_tot = float(np.sum((t - t.mean()) ** 2))
    if ss_tot == 0.0:
        return 1.0 if ss_res == 0.0 else 0.0
    return 1.0 - ss_res / ss_tot


def rmse(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    t, p = _pair(y_true, y_pred)
    if t.size == 0:
        return float("nan")
    return float(np.sqrt(np.mean((t - p) ** 2)))


def mae(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    t, p = _pair(y_true, y_pred)
    if t.size == 0:
        return float("nan")
    return float(np.mean(np.abs(t - p)))


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax over the last axis, stable for large logits."""
    z = np.asarray(logits, dtype=np.float64)
    z = z - np.max(z, axis=-1, keepdims=True)
    e = np.exp(z)
    return e / np.sum(e, axis=-1, keepdims=True)


def accuracy(y_true: np.ndarray, scores_or_labels: np.ndarray) -> float:
    """Share of correct labels. ``scores_or_labels`` is either predicted labels (n,) or scores (n, C)."""
    y = np.asarray(y_true).reshape(-1)
    s = np.asarray(scores_or_labels)
    labels = s.reshape(-1, s.shape[-1]).argmax(axis=1) if s.ndim > 1 and s.size != y.size else s.reshape(-1)
    if labels.shape != y.shape:
        raise ValueError(f"y_true has {y.size} labels but {labels.size} predictions were given")
    if y.size == 0:
        return float("nan")
    return float(np.mean(labels.astype(np.int64) == y.astype(np.int64)))


def log_loss(y_true: np.ndarray, proba: np.ndarray, eps: float = LOG_LOSS_EPS) -> float:
    """Mean negative log-likelihood of the true class; ``proba`` is (n, C) class probabilities (rows sum to 1)."""
    y = np.asarray(y_true).reshape(-1).astype(np.int64)
    p = np.asarray(proba, dtype=np.float64)
    p = p.reshape(-1, p.shape[-1])
    if p.shape[0] != y.size:
        raise ValueError(f"y_true has {y.size} labels but proba has {p.shape[0]} rows")
    if y.size == 0:
        return float("nan")
    if y.min() < 0 or y.max() >= p.shape[1]:
        raise ValueError(f"labels must be in 0..{p.shape[1] - 1}")
    picked = np.clip(p[np.arange(y.size), y], eps, 1.0)
    return float(-np.mean(np.log(picked)))


def regression_scores(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, float]:
    """``r2`` and ``rmse`` (and ``mae``) of targets in original units."""
    return {"r2": r2(y_true, y_pred), "rmse": rmse(y_true, y_pred), "mae": mae(y_true, y_pred)}


def classification_scores(y_true: np.ndarray, logits: np.ndarray) -> dict[str, float]:
    """``accuracy`` and ``log_loss`` from the model's logits (n, C)."""
    proba = softmax(logits)
    return {"accuracy": accuracy(y_true, proba), "log_loss": log_loss(y_true, proba)}
