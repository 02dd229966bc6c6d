"""Symbolic fit of a learned edge: y ≈ a·f(b·x + c) + d for f in a fixed library, by least squares.

No expression parsing or eval: the library is a fixed table of numpy functions. For each f the inner parameters
(b, c) are searched on a grid and refined with Nelder-Mead, while (a, d) are solved exactly by linear least squares
for every (b, c) (variable projection). x is standardised first for stable numerics; the reported formula is in
the original x.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
from scipy.optimize import minimize

from kamoe_viz.errors import ValidationError


def _log(u: np.ndarray) -> np.ndarray:
    return np.log(u) if np.all(u > 0) else np.full_like(u, np.nan)


def _sqrt(u: np.ndarray) -> np.ndarray:
    return np.sqrt(u) if np.all(u >= 0) else np.full_like(u, np.nan)


def _exp(u: np.ndarray) -> np.ndarray:
    return np.exp(u) if np.all(u < 50) else np.full_like(u, np.nan)


# name -> (function, how it is written with the inner expression in place of {u}, needs inner params)
LIBRARY: dict[str, tuple[Callable[[np.ndarray], np.ndarray], str, bool]] = {
    "x": (lambda u: u, "{u}", False),
    "x^2": (lambda u: u**2, "({u})²", True),
    "x^3": (lambda u: u**3, "({u})³", True),
    "exp": (_exp, "exp({u})", True),
    "log": (_log, "log({u})", True),
    "sin": (np.sin, "sin({u})", True),
    "tanh": (np.tanh, "tanh({u})", True),
    "abs": (np.abs, "|{u}|", True),
    "sqrt": (_sqrt, "√({u})", True),
}
CANDIDATES = tuple(LIBRARY)


def _outer(fu: np.ndarray, y: np.ndarray) -> tuple[float, float, float]:
    """Best (a, d) for y ≈ a·fu + d and its sum of squared errors; inf when fu is not usable."""
    if not np.all(np.isfinite(fu)):
        return np.nan, np.nan, np.inf
    design = np.column_stack([fu, np.ones_like(fu)])
    coef, *_ = np.linalg.lstsq(design, y, rcond=None)
    resid = y - design @ coef
    return float(coef[0]), float(coef[1]), float(resid @ resid)


def _num(value: float) -> str:
    return f"{value:.4g}"


def _inner_text(b: float, c: float) -> str:
    text = "x" if abs(b - 1) < 1e-12 else f"{_num(b)}·x"
    if abs(c) >= 1e-12:
        text += f" {'+' if c > 0 else '−'} {_num(abs(c))}"
    return text


def formula(candidate: str, a: float, b: float, c: float, d: float) -> str:
    """Readable formula, e.g. '0.512·tanh(1.73·x − 0.21) + 0.03'."""
    _, template, _ = LIBRARY[candidate]
    inner = _inner_text(b, c)
    if candidate == "x":
        inner = "x"
    body = template.format(u=inner)
    text = f"{_num(a)}·{body}"
    if abs(d) >= 1e-12:
        text += f" {'+' if d > 0 else '−'} {_num(abs(d))}"
    return text


def _fit_one(name: str, xs: np.ndarray, y: np.ndarray) -> tuple[float, float, float, float, float]:
    """(a, b, c, d, sse) in standardised x."""
    func, _, inner = LIBRARY[name]
    if not inner:
        a, d, sse = _outer(xs, y)
        return a, 1.0, 0.0, d, sse

    def sse_of(params: np.ndarray) -> float:
        with np.errstate(all="ignore"):
            return _outer(func(params[0] * xs + params[1]), y)[2]

    scales = [-4.0, -2.0, -1.0, -0.5, -0.25, 0.25, 0.5, 1.0, 2.0, 4.0]
    shifts = [-6.0, -3.0, -2.0, -1.0, -0.5, 0.0, 0.5, 1.0, 2.0, 3.0, 6.0]
    starts = sorted(((sse_of(np.array([b, c])), b, c) for b in scales for c in shifts), key=lambda t: t[0])
    best = (np.inf, 1.0, 0.0)
    for sse0, b0, c0 in starts[:3]:
        if not np.isfinite(sse0):
            continue
        result = minimize(
            sse_of, np.array([b0, c0]), method="Nelder-Mead", options={"xatol": 1e-6, "fatol": 1e-10, "maxiter": 400}
        )
        value = float(result.fun) if np.isfinite(result.fun) else sse0
        params = result.x if np.isfinite(result.fun) and result.fun <= sse0 else np.array([b0, c0])
        if min(value, sse0) < best[0]:
            best = (min(value, sse0), float(params[0]), float(params[1]))
    if not np.isfinite(best[0]):
        return np.nan, np.nan, np.nan, np.nan, np.inf
    with np.errstate(all="ignore"):
        a, d, sse = _outer(func(best[1] * xs + best[2]), y)
    return a, best[1], best[2], d, sse


def fit_symbolic(x: np.ndarray, y: np.ndarray, candidates: tuple[str, ...] = CANDIDATES) -> pd.DataFrame:
    """Fit y ≈ a·f(b·x + c) + d for each candidate f; one row per candidate sorted by R² (best first).

    Columns: candidate, r2, rmse, a, b, c, d (in original x units), formula, valid (False when no parameters put
    the data inside f's domain, e.g. log of negative numbers). R² is NaN when y is constant.
    """
    x = np.asarray(x, dtype=np.float64).reshape(-1)
    y = np.asarray(y, dtype=np.float64).reshape(-1)
    if len(x) != len(y) or len(x) < 4:
        raise ValidationError("symbolic fit points", len(x), "need at least 4 (x, y) pairs of equal length")
    if not (np.all(np.isfinite(x)) and np.all(np.isfinite(y))):
        raise ValidationError("symbolic fit points", "NaN/inf", "must all be finite numbers")
    unknown = [c for c in candidates if c not in LIBRARY]
    if unknown:
        raise ValidationError("candidate", unknown[0], f"must be one of {', '.join(LIBRARY)}")
    mean, std = float(x.mean()), float(x.std())
    std = std if std > 1e-12 else 1.0
    xs = (x - mean) / std
    sst = float(np.sum((y - y.mean()) ** 2))
    rows = []
    for name in candidates:
        a, b_s, c_s, d, sse = _fit_one(name, xs, y)
        valid = bool(np.isfinite(sse))
        # b_s·(x - mean)/std + c_s  ->  b·x + c
        b = b_s / std if valid else np.nan
        c = c_s - b_s * mean / std if valid else np.nan
        if name == "x" and valid:  # a·(x - mean)/std + d  ->  (a/std)·x + (d - a·mean/std)
            a, d, b, c = a / std, d - a * mean / std, 1.0, 0.0
        rows.append(
            {
                "candidate": name,
                "r2": (1.0 - sse / sst) if (valid and sst > 1e-24) else np.nan,
                "rmse": float(np.sqrt(sse / len(y))) if valid else np.nan,
                "a": a,
                "b": b,
                "c": c,
                "d": d,
                "valid": valid,
                "formula": formula(name, a, b, c, d) if valid else f"{name}: the data lie outside its domain",
            }
        )
    frame = pd.DataFrame(rows)
    return frame.sort_values(
        ["valid", "r2", "rmse"], ascending=[False, False, True], na_position="last", ignore_index=True
    )


def evaluate_fit(row: Any, x: np.ndarray) -> np.ndarray:
    """The fitted candidate of a :func:`fit_symbolic` row on new x (to draw it over the edge)."""
    func, _, _ = LIBRARY[row["candidate"]]
    x = np.asarray(x, dtype=np.float64)
    with np.errstate(all="ignore"):
        inner = x if row["candidate"] == "x" else row["b"] * x + row["c"]
        return row["a"] * func(inner) + row["d"]


def edge_symbolic_fit(
    curves: pd.DataFrame, part: str = "total", candidates: tuple[str, ...] = CANDIDATES
) -> pd.DataFrame:
    """:func:`fit_symbolic` on one edge's curve from :func:`~kamoe_viz.interpret.splines.edge_curves`."""
    if part not in ("total", "base", "spline"):
        raise ValidationError("part", part, "must be total, base or spline")
    if curves["edge"].nunique() != 1:
        raise ValidationError("curves", curves["edge"].nunique(), "must hold exactly one edge")
    return fit_symbolic(curves["x"].to_numpy(), curves[part].to_numpy(), candidates)
