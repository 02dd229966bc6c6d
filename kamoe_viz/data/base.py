"""The one shape every dataset takes once loaded: split, scaled float32 arrays plus what is known about them."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

TASKS = ("regression", "classification")


@dataclass
class Dataset:
    """A loaded, split and scaled dataset.

    Arrays are float32 (features) and float32 (regression targets, shape (n, 1) or (n, T, 1) for sequence targets)
    or int64 (class labels, shape (n,)). Tabular X is (n, F); sequential X is (n, T, F) windows.
    Scaling (standardisation) is fit on the training split only; ``x_mean``/``x_std`` and ``y_mean``/``y_std``
    record it so that raw values can be recovered for plots. ``regimes_*`` hold the ground-truth regime, cluster or
    class of each row when known (int64, -1 = unknown), so expert specialisation can be scored.
    """

    name: str
    task: str
    feature_names: list[str]
    target_name: str
    X_train: np.ndarray
    y_train: np.ndarray
    X_val: np.ndarray
    y_val: np.ndarray
    X_test: np.ndarray
    y_test: np.ndarray
    description: str = ""
    class_names: list[str] | None = None
    regimes_train: np.ndarray | None = None
    regimes_val: np.ndarray | None = None
    regimes_test: np.ndarray | None = None
    regime_names: list[str] | None = None
    is_sequence: bool = False
    x_mean: np.ndarray | None = None
    x_std: np.ndarray | None = None
    y_mean: float = 0.0
    y_std: float = 1.0
    source: str = ""  # where the data came from (file path, sklearn fetcher, generator), shown in the UI
    options: dict[str, Any] = field(default_factory=dict)

    @property
    def n_features(self) -> int:
        return int(self.X_train.shape[-1])

    @property
    def n_outputs(self) -> int:
        """Width of the model's output layer: 1 for regression, the number of classes for classification."""
        if self.task == "classification":
            return len(self.class_names) if self.class_names else int(self.y_train.max()) + 1
        return 1

    @property
    def seq_len(self) -> int | None:
        return int(self.X_train.shape[1]) if self.is_sequence else None

    @property
    def has_regimes(self) -> bool:
        return self.regimes_train is not None

    @property
    def is_2d(self) -> bool:
        """True for 2-D tabular inputs, where the app can draw the input plane."""
        return not self.is_sequence and self.n_features == 2

    def sizes(self) -> dict[str, int]:
        return {"train": len(self.X_train), "val": len(self.X_val), "test": len(self.X_test)}

    def split(self, which: str) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """(X, y, regimes) of ``train``, ``val`` or ``test``."""
        if which not in ("train", "val", "test"):
            raise ValueError(f"split must be train, val or test, got {which!r}")
        return getattr(self, f"X_{which}"), getattr(self, f"y_{which}"), getattr(self, f"regimes_{which}")

    def unscale_X(self, X: np.ndarray) -> np.ndarray:
        if self.x_mean is None or self.x_std is None:
            return X
        return X * self.x_std + self.x_mean

    def unscale_y(self, y: np.ndarray) -> np.ndarray:
        if self.task == "classification":
            return y
        return y * self.y_std + self.y_mean
