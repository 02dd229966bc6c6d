"""Generated datasets with known structure: the default regime regression and the 2-D teaching sets."""

from __future__ import annotations

import numpy as np
from sklearn.datasets import make_blobs, make_moons

from kamoe_viz.data.base import Dataset
from kamoe_viz.data.splits import build_tabular

# One function per regime, of the features x (n, F >= 4); distinct shapes so experts can specialise.
_REGIME_FUNCTIONS = (
    ("2·sin(1.5·x2) + 0.5·x0 + 1.5", lambda x: 2 * np.sin(1.5 * x[:, 2]) + 0.5 * x[:, 0] + 1.5),
    ("x3² − 2.5 + 0.5·x1", lambda x: x[:, 3] ** 2 - 2.5 + 0.5 * x[:, 1]),
    ("−1.5·x2 + 2·tanh(2·x3)", lambda x: -1.5 * x[:, 2] + 2 * np.tanh(2 * x[:, 3])),
    ("|x2|·x3 − 1", lambda x: np.abs(x[:, 2]) * x[:, 3] - 1),
    ("2·cos(2·x3) + 1", lambda x: 2 * np.cos(2 * x[:, 3]) + 1),
    ("0.8·x2·x3 − 2", lambda x: 0.8 * x[:, 2] * x[:, 3] - 2),
)


def regimes(
    *,
    seed: int,
    test_fraction: float,
    val_fraction: float,
    n_samples: int = 3000,
    n_regimes: int = 3,
    n_features: int = 4,
    noise: float = 0.1,
    **_: object,
) -> Dataset:
    """The default: the angle of (x0, x1) picks one of K sectors; each sector has its own function of x2, x3."""
    rng = np.random.default_rng(1000 + seed)
    X = rng.uniform(-2.0, 2.0, size=(n_samples, n_features))
    angle = np.mod(np.arctan2(X[:, 1], X[:, 0]), 2 * np.pi)
    regime = np.minimum((angle / (2 * np.pi / n_regimes)).astype(int), n_regimes - 1)
    y = np.empty(n_samples)
    for r in range(n_regimes):
        rows = regime == r
        y[rows] = _REGIME_FUNCTIONS[r][1](X[rows])
    y += noise * rng.standard_normal(n_samples)
    names = [f"regime {r}: y = {_REGIME_FUNCTIONS[r][0]}" for r in range(n_regimes)]
    description = (
        f"Synthetic regression with {n_regimes} regimes: the angle of (x0, x1) splits the plane into {n_regimes} "
        "sectors, and each sector has its own function of x2 and x3 (plus Gaussian noise). The true regime of every "
        "row is known, so you can check whether each expert takes one regime. No download needed."
    )
    return build_tabular(
        name="regimes",
        task="regression",
        X=X,
        y=y,
        feature_names=[f"x{i}" for i in range(n_features)],
        target_name="y",
        seed=seed,
        test_fraction=test_fraction,
        val_fraction=val_fraction,
        description=description,
        source="generated (kamoe_viz.data.synthetic.regimes)",
        regimes=regime,
        regime_names=names,
        options=dict(n_samples=n_samples, n_regimes=n_regimes, n_features=n_features, noise=noise),
    )


def _classification_2d(
    name: str,
    X: np.ndarray,
    y: np.ndarray,
    regimes: np.ndarray,
    regime_names: list[str],
    class_names: list[str],
    description: str,
    seed: int,
    test_fraction: float,
    val_fraction: float,
    options: dict,
) -> Dataset:
    return build_tabular(
        name=name,
        task="classification",
        X=X,
        y=y,
        feature_names=["x1", "x2"],
        target_name="class",
        seed=seed,
        test_fraction=test_fraction,
        val_fraction=val_fraction,
        description=description,
        source=f"generated (kamoe_viz.data.synthetic.{name})",
        class_names=class_names,
        regimes=regimes,
        regime_names=regime_names,
        options=options,
    )


def moons(
    *, seed: int, test_fraction: float, val_fraction: float, n_samples: int = 1000, noise: float = 0.2, **_: object
) -> Dataset:
    X, y = make_moons(n_samples=n_samples, noise=noise, random_state=seed)
    return _classification_2d(
        "moons",
        X,
        y,
        y,
        ["upper moon", "lower moon"],
        ["upper moon", "lower moon"],
        "Two interleaving half-moons (2-D classification). Regime = moon.",
        seed,
        test_fraction,
        val_fraction,
        dict(n_samples=n_samples, noise=noise),
    )


def xor(
    *, seed: int, test_fraction: float, val_fraction: float, n_samples: int = 1000, noise: float = 0.1, **_: object
) -> Dataset:
    rng = np.random.default_rng(seed)
    clean = rng.uniform(-1.0, 1.0, size=(n_samples, 2))
    quadrant = (clean[:, 0] < 0).astype(int) * 2 + (clean[:, 1] < 0).astype(int)
    y = (np.sign(clean[:, 0]) == np.sign(clean[:, 1])).astype(int)
    X = clean + noise * rng.standard_normal(clean.shape)
    return _classification_2d(
        "xor",
        X,
        y,
        quadrant,
        ["x1>0, x2>0", "x1>0, x2<0", "x1<0, x2>0", "x1<0, x2<0"],
        ["different sign", "same sign"],
        "XOR of the signs of x1 and x2 (2-D classification), with Gaussian noise on the points. Regime = quadrant: "
        "a natural job for four experts.",
        seed,
        test_fraction,
        val_fraction,
        dict(n_samples=n_samples, noise=noise),
    )


def spiral(
    *,
    seed: int,
    test_fraction: float,
    val_fraction: float,
    n_samples: int = 1000,
    noise: float = 0.2,
    n_classes: int = 2,
    **_: object,
) -> Dataset:
    rng = np.random.default_rng(seed)
    per = np.full(n_classes, n_samples // n_classes)
    per[: n_samples - per.sum()] += 1
    points, labels = [], []
    for c, count in enumerate(per):
        radius = np.linspace(0.05, 1.0, count)
        theta = 2 * np.pi * c / n_classes + 3.5 * radius + noise * rng.standard_normal(count)
        points.append(np.stack([radius * np.cos(theta), radius * np.sin(theta)], axis=1))
        labels.append(np.full(count, c))
    X, y = np.concatenate(points), np.concatenate(labels)
    names = [f"arm {c}" for c in range(n_classes)]
    return _classification_2d(
        "spiral",
        X,
        y,
        y,
        names,
        names,
        f"{n_classes} interleaved spiral arms (2-D classification): hard for a linear gate. Regime = arm.",
        seed,
        test_fraction,
        val_fraction,
        dict(n_samples=n_samples, noise=noise, n_classes=n_classes),
    )


def blobs(
    *,
    seed: int,
    test_fraction: float,
    val_fraction: float,
    n_samples: int = 1000,
    noise: float = 1.0,
    centers: int = 4,
    **_: object,
) -> Dataset:
    X, blob = make_blobs(
        n_samples=n_samples, centers=centers, cluster_std=noise, random_state=seed, center_box=(-8.0, 8.0)
    )
    names = [f"blob {c}" for c in range(centers)]
    return _classification_2d(
        "blobs",
        X,
        blob,
        blob,
        names,
        names,
        f"{centers} Gaussian blobs (2-D classification); noise is the blobs' standard deviation. Regime = blob.",
        seed,
        test_fraction,
        val_fraction,
        dict(n_samples=n_samples, noise=noise, centers=centers),
    )
