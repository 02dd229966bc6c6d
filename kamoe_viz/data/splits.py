"""Reproducible splits and train-only standardisation, shared by every loader."""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.model_selection import train_test_split

from kamoe_viz.data.base import Dataset


def _split_indices(
    n: int, seed: int, test_fraction: float, val_fraction: float, stratify: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    index = np.arange(n)

    def split(idx: np.ndarray, fraction: float, labels: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        if labels is not None:
            _, counts = np.unique(labels, return_counts=True)
            n_held = int(np.ceil(fraction * len(idx)))
            if counts.min() >= 2 and n_held >= len(counts) and len(idx) - n_held >= len(counts):
                return train_test_split(idx, test_size=fraction, random_state=seed, stratify=labels)
        return train_test_split(idx, test_size=fraction, random_state=seed)

    rest, test = split(index, test_fraction, stratify)
    train, val = split(rest, val_fraction, None if stratify is None else stratify[rest])
    return np.sort(train), np.sort(val), np.sort(test)


def _standardise(train: np.ndarray, axis: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    mean = train.mean(axis=axis)
    std = train.std(axis=axis)
    std = np.where(std > 1e-12, std, 1.0)
    return mean, std


def build_tabular(
    *,
    name: str,
    task: str,
    X: np.ndarray,
    y: np.ndarray,
    feature_names: list[str],
    target_name: str,
    seed: int,
    test_fraction: float,
    val_fraction: float,
    description: str = "",
    source: str = "",
    class_names: list[str] | None = None,
    regimes: np.ndarray | None = None,
    regime_names: list[str] | None = None,
    options: dict[str, Any] | None = None,
) -> Dataset:
    """Split (stratified for classification) and standardise X, and y for regression, on the training rows only."""
    X = np.asarray(X, dtype=np.float64)
    labels = np.asarray(y) if task == "classification" else None
    train, val, test = _split_indices(len(X), seed, test_fraction, val_fraction, labels)
    x_mean, x_std = _standardise(X[train], (0,))
    Xs = ((X - x_mean) / x_std).astype(np.float32)
    if task == "classification":
        ys = np.asarray(y, dtype=np.int64)
        y_mean, y_std = 0.0, 1.0
    else:
        yv = np.asarray(y, dtype=np.float64).reshape(-1, 1)
        y_mean, y_std = float(yv[train].mean()), float(yv[train].std() or 1.0)
        ys = ((yv - y_mean) / y_std).astype(np.float32)
    reg = None if regimes is None else np.asarray(regimes, dtype=np.int64)
    return Dataset(
        name=name,
        task=task,
        feature_names=list(feature_names),
        target_name=target_name,
        X_train=Xs[train],
        y_train=ys[train],
        X_val=Xs[val],
        y_val=ys[val],
        X_test=Xs[test],
        y_test=ys[test],
        description=description,
        class_names=class_names,
        regimes_train=None if reg is None else reg[train],
        regimes_val=None if reg is None else reg[val],
        regimes_test=None if reg is None else reg[test],
        regime_names=regime_names,
        x_mean=x_mean.astype(np.float32),
        x_std=x_std.astype(np.float32),
        y_mean=y_mean,
        y_std=y_std,
        source=source,
        options=dict(options or {}),
    )


def build_windows(
    *,
    name: str,
    series: np.ndarray,
    feature_names: list[str],
    target_index: int,
    window: int,
    horizon: int,
    test_fraction: float,
    val_fraction: float,
    description: str = "",
    source: str = "",
    regimes: np.ndarray | None = None,
    regime_names: list[str] | None = None,
    options: dict[str, Any] | None = None,
) -> Dataset:
    """Window a (N, F) series into X (n, window, F) -> y = target column ``horizon`` steps after the window.

    Split chronologically by the target's time (train, then validation, then test: no shuffling across the
    boundaries); standardisation statistics come from the part of the series before the first validation target.
    """
    series = np.asarray(series, dtype=np.float64)
    n_windows = len(series) - window - horizon + 1
    target_pos = np.arange(n_windows) + window + horizon - 1
    n_test = max(1, round(test_fraction * n_windows))
    n_val = max(1, round(val_fraction * (n_windows - n_test)))
    n_train = n_windows - n_test - n_val
    train_end = int(target_pos[n_train - 1]) + 1
    mean, std = _standardise(series[:train_end], (0,))
    scaled = (series - mean) / std
    starts = np.arange(n_windows)
    X = np.stack([scaled[s : s + window] for s in starts]).astype(np.float32)
    y = scaled[target_pos, target_index].reshape(-1, 1).astype(np.float32)
    reg = None if regimes is None else np.asarray(regimes, dtype=np.int64)[target_pos]
    parts = (slice(0, n_train), slice(n_train, n_train + n_val), slice(n_train + n_val, n_windows))
    return Dataset(
        name=name,
        task="regression",
        feature_names=list(feature_names),
        target_name=feature_names[target_index],
        X_train=X[parts[0]],
        y_train=y[parts[0]],
        X_val=X[parts[1]],
        y_val=y[parts[1]],
        X_test=X[parts[2]],
        y_test=y[parts[2]],
        description=description,
        regimes_train=None if reg is None else reg[parts[0]],
        regimes_val=None if reg is None else reg[parts[1]],
        regimes_test=None if reg is None else reg[parts[2]],
        regime_names=regime_names,
        is_sequence=True,
        x_mean=mean.astype(np.float32),
        x_std=std.astype(np.float32),
        y_mean=float(mean[target_index]),
        y_std=float(std[target_index]),
        source=source,
        options=dict(options or {}),
    )
