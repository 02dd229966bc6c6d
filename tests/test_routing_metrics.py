"""Routing metrics: hand-computed values, edge cases, and that every caller uses the one definition."""

from __future__ import annotations

import math

import numpy as np
import pytest

from kamoe_viz import routing_metrics as rm
from kamoe_viz.compare.worker import gate_entropy, regime_agreement
from kamoe_viz.interpret import gates as interpret_gates


def test_load_is_top1_share_and_sums_to_one():
    w = np.array([[0.9, 0.1, 0.0], [0.2, 0.7, 0.1], [0.6, 0.3, 0.1], [0.1, 0.1, 0.8]])
    assert rm.expert_load(w).tolist() == [0.5, 0.25, 0.25]
    assert rm.expert_load(w).sum() == pytest.approx(1.0)


def test_rows_no_expert_took_are_dropped_not_counted():
    w = np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 0.5], [0.0, 0.0]])
    assert rm.winners(w).tolist() == [-1, 0, 1, -1]
    assert rm.expert_load(w).tolist() == [0.5, 0.5]
    assert rm.dropped_fraction(w) == 0.5


def test_balance_metrics_hand_computed():
    load = np.array([0.5, 0.25, 0.25])
    mean = 1 / 3
    assert rm.max_violation(load) == pytest.approx((0.5 - mean) / mean)
    assert rm.load_cv(load) == pytest.approx(np.std(load) / mean)
    # Gini of (0.25, 0.25, 0.5): sum_i sum_j |x_i - x_j| / (2 n^2 mean) = (4 * 0.25) / (2 * 9 * 1/3) = 1/6
    assert rm.gini(load) == pytest.approx(1 / 6)
    assert rm.gini(np.array([1.0, 0.0, 0.0, 0.0])) == pytest.approx(3 / 4)
    assert rm.max_violation(np.array([1.0, 0.0, 0.0])) == pytest.approx(2.0)
    assert rm.max_violation(np.full(4, 0.25)) == 0.0 and rm.load_cv(np.full(4, 0.25)) == 0.0


def test_max_violation_per_batch():
    w = np.array([[1, 0], [1, 0], [0, 1], [1, 0]], dtype=float)
    # batch 1: both to expert 0 -> loads (1, 0), MaxVio 1; batch 2: (0.5, 0.5) -> 0
    assert rm.max_violation_per_batch(w, 2) == pytest.approx(0.5)


def test_entropy_bounds_and_single_expert():
    assert rm.routing_entropy(np.eye(3)) == pytest.approx(0.0)
    assert rm.routing_entropy(np.full((4, 3), 0.4)) == pytest.approx(1.0)
    assert math.isnan(rm.routing_entropy(np.ones((4, 1))))
    assert rm.row_entropy(np.zeros((2, 3))).tolist() == [0.0, 0.0]


def test_regime_agreement_up_to_renaming():
    w = np.eye(3)[[2, 2, 0, 0, 1, 1]]
    regimes = np.array([0, 0, 1, 1, 2, 2])
    assert rm.regime_nmi(w, regimes) == pytest.approx(1.0)
    assert rm.regime_ari(w, regimes) == pytest.approx(1.0)
    assert rm.regime_mutual_information(w, regimes) == pytest.approx(math.log(3))
    assert math.isnan(rm.regime_nmi(w, None))
    assert math.isnan(rm.regime_nmi(w, np.zeros(6, int)))  # one regime: nothing to agree on
    with pytest.raises(ValueError, match="regimes has 2 labels"):
        rm.regime_nmi(w, np.array([0, 1]))


def test_summary_keys_and_sequences():
    rng = np.random.default_rng(0)
    w = rng.random((10, 4, 3))  # (rows, T, E) is flattened over time
    regimes = rng.integers(0, 3, size=40)
    s = rm.routing_summary(w, regimes, batch_size=8)
    for key in (
        "load",
        "load_cv",
        "max_violation",
        "gini",
        "min_load",
        "routing_entropy",
        "dropped_fraction",
        "nmi",
        "max_violation_batch",
    ):
        assert key in s
    assert sum(s["load"]) == pytest.approx(1.0) and len(s["load"]) == 3


def test_callers_share_the_definition():
    rng = np.random.default_rng(1)
    w = rng.random((50, 3))
    regimes = rng.integers(0, 3, size=80)  # compare passes the regimes of the whole split
    assert gate_entropy(w) == pytest.approx(rm.routing_entropy(w))
    assert np.allclose(interpret_gates.routing_entropy(w), rm.row_entropy(w))
    assert regime_agreement(w, regimes) == pytest.approx(rm.regime_nmi(w, regimes[:50]))


def test_regime_nmi_matches_scikit_learn() -> None:
    from sklearn.metrics import normalized_mutual_info_score

    rng = np.random.default_rng(3)
    for experts, regimes_n, rows in ((2, 2, 50), (3, 4, 300), (5, 3, 17), (4, 2, 1000)):
        w = rng.random((rows, experts))
        regimes = rng.integers(0, regimes_n, rows)
        regimes[: rows // 3] = np.argmax(w[: rows // 3], axis=1) % regimes_n  # partly aligned
        pairs = rm._regime_pairs(w, regimes)
        assert rm.regime_nmi(w, regimes) == pytest.approx(normalized_mutual_info_score(*pairs), abs=1e-12)
    one_expert = np.tile([[1.0, 0.0]], (6, 1))  # every row to expert 0: no information about the regimes
    assert rm.regime_nmi(one_expert, np.array([0, 1, 0, 1, 0, 1])) == 0.0
