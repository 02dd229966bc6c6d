"""Symbolic fit: recovers known functions from the fixed library, reports R² honestly, refuses bad input."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from kamoe_viz.errors import ValidationError
from kamoe_viz.interpret.symbolic import CANDIDATES, edge_symbolic_fit, evaluate_fit, fit_symbolic

X = np.linspace(-2.0, 3.0, 120)
KNOWN = {
    "x": -1.7 * X + 0.4,
    "x^2": 0.8 * (X - 0.5) ** 2 - 1.0,
    "x^3": 0.3 * (X + 0.2) ** 3,
    "exp": 0.5 * np.exp(0.9 * X - 0.3) + 0.2,
    "log": 1.5 * np.log(X + 2.5) - 0.3,
    "sin": 2.0 * np.sin(1.3 * X + 0.4) + 0.1,
    "tanh": 2.0 * np.tanh(1.5 * X - 0.3) + 0.5,
    "abs": 0.7 * np.abs(X - 1.0) - 0.2,
    "sqrt": 1.2 * np.sqrt(X + 2.2) + 0.3,
}


@pytest.mark.parametrize("name", list(KNOWN))
def test_recovers_each_library_function(name):
    fits = fit_symbolic(X, KNOWN[name])
    assert set(fits["candidate"]) == set(CANDIDATES)
    row = fits.set_index("candidate").loc[name]
    assert row["r2"] > 0.9999, fits[["candidate", "r2"]]
    assert fits.iloc[0]["r2"] == pytest.approx(fits["r2"].max())  # sorted best first
    best = fits.iloc[0]
    assert np.allclose(evaluate_fit(best, X), KNOWN[name], atol=0.02 * np.ptp(KNOWN[name]))
    assert "nan" not in row["formula"] and "x" in row["formula"]


def test_r2_matches_its_definition():
    rng = np.random.default_rng(0)
    y = np.tanh(X) + rng.normal(0, 0.1, len(X))
    fits = fit_symbolic(X, y)
    for _, row in fits[fits["valid"]].iterrows():
        pred = evaluate_fit(row, X)
        r2 = 1 - np.sum((y - pred) ** 2) / np.sum((y - y.mean()) ** 2)
        assert row["r2"] == pytest.approx(r2, abs=1e-6)
    assert fits.iloc[0]["r2"] < 1.0  # noise: no perfect fit


def test_formula_is_readable():
    fits = fit_symbolic(X, KNOWN["tanh"]).set_index("candidate")
    assert fits.loc["tanh", "formula"].count("tanh(") == 1
    assert fit_symbolic(X, KNOWN["x"]).set_index("candidate").loc["x", "formula"] == "-1.7·x + 0.4"


def test_constant_curve_has_no_r2():
    fits = fit_symbolic(X, np.full_like(X, 3.0))
    assert fits["r2"].isna().all()


def test_bad_input_is_refused():
    with pytest.raises(ValidationError, match="at least 4"):
        fit_symbolic([1, 2], [1, 2])
    with pytest.raises(ValidationError, match="finite"):
        fit_symbolic([1, 2, 3, np.nan], [1, 2, 3, 4])
    with pytest.raises(ValidationError, match="candidate"):
        fit_symbolic(X, X, candidates=("x", "gamma"))


def test_edge_symbolic_fit_uses_one_edge():
    curves = pd.DataFrame({"edge": "h0 → kan1·0", "x": X, "total": KNOWN["sin"], "base": X, "spline": X})
    assert edge_symbolic_fit(curves, "total").iloc[0]["candidate"] == "sin"
    two = pd.concat([curves, curves.assign(edge="other")])
    with pytest.raises(ValidationError, match="exactly one edge"):
        edge_symbolic_fit(two)
