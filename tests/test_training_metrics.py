"""kamoe_viz.metrics against scikit-learn and hand-computed values."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn import metrics as skm

from kamoe_viz import metrics as M


def test_regression_scores_match_sklearn() -> None:
    rng = np.random.default_rng(0)
    y = rng.normal(size=(50, 1)) * 3 + 7
    p = y + rng.normal(size=(50, 1))
    assert M.r2(y, p) == pytest.approx(skm.r2_score(y, p))
    assert M.rmse(y, p) == pytest.approx(np.sqrt(skm.mean_squared_error(y, p)))
    assert M.mae(y, p) == pytest.approx(skm.mean_absolute_error(y, p))
    scores = M.regression_scores(y, p)
    assert set(scores) == {"r2", "rmse", "mae"}


def test_regression_hand_values_and_edges() -> None:
    assert M.r2([1, 2, 3], [1, 2, 3]) == 1.0
    assert M.r2([1, 2, 3], [2, 2, 2]) == pytest.approx(0.0)
    assert M.rmse([0, 0], [3, 4]) == pytest.approx(np.sqrt(12.5))
    assert M.r2([5, 5], [5, 5]) == 1.0 and M.r2([5, 5], [4, 5]) == 0.0  # constant target, as sklearn
    assert np.isnan(M.r2([], [])) and np.isnan(M.rmse([], []))
    seq_true, seq_pred = np.ones((4, 3, 1)), np.zeros((4, 3, 1))  # sequence targets are scored over all steps
    assert M.rmse(seq_true, seq_pred) == 1.0
    with pytest.raises(ValueError, match="values"):
        M.r2([1, 2], [1, 2, 3])


def test_classification_scores_match_sklearn() -> None:
    rng = np.random.default_rng(1)
    logits = rng.normal(size=(60, 4)) * 2
    y = rng.integers(0, 4, size=60)
    proba = M.softmax(logits)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    assert M.accuracy(y, proba) == pytest.approx(skm.accuracy_score(y, proba.argmax(1)))
    assert M.accuracy(y, proba.argmax(1)) == M.accuracy(y, proba)
    assert M.log_loss(y, proba) == pytest.approx(skm.log_loss(y, proba, labels=[0, 1, 2, 3]))
    scores = M.classification_scores(y, logits)
    assert scores["log_loss"] == pytest.approx(skm.log_loss(y, proba, labels=[0, 1, 2, 3]))


def test_log_loss_is_finite_for_confident_mistakes() -> None:
    proba = np.array([[1.0, 0.0], [0.0, 1.0]])
    assert np.isfinite(M.log_loss([1, 1], proba))
    assert M.softmax(np.array([[1000.0, 0.0]]))[0, 0] == pytest.approx(1.0)
    with pytest.raises(ValueError, match="labels"):
        M.log_loss([2], np.array([[0.5, 0.5]]))
