"""Paired statistics: hand-computed values, agreement with scipy on a fixed table, verdict wording, edge cases."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from kamoe_viz.errors import ValidationError
from kamoe_viz.stats import headline, paired_stats, pairwise, summary, verdict

A = [10.0, 12.0, 9.0, 11.0, 13.0]
B = [8.0, 10.0, 10.0, 9.0, 10.0]  # differences 2, 2, -1, 2, 3


def test_hand_computed_paired_values():
    s = paired_stats(A, B, a="grkan", b="grn")
    # d = [2, 2, -1, 2, 3]: mean 1.6, sd sqrt(0.92 * 100 / 4) = sqrt(23) / sqrt(10)... computed by hand below
    assert s.n == 5
    assert s.mean_diff == pytest.approx(1.6)
    assert s.sd_diff == pytest.approx(math.sqrt(9.2 / 4))  # squared deviations sum to 9.2
    t = 1.6 / (math.sqrt(2.3) / math.sqrt(5))
    assert s.t_stat == pytest.approx(t)  # 2.3591
    half = 2.7764451051977987 * math.sqrt(2.3) / math.sqrt(5)  # t_{0.975, 4}
    assert (s.ci_low, s.ci_high) == (pytest.approx(1.6 - half), pytest.approx(1.6 + half))
    assert s.ci_low < 0 < s.ci_high and not s.significant
    # Wilcoxon: |d| ranks 3, 3, 1, 3, 5 -> W+ = 14, W- = 1; scipy reports min(W+, W-) = 1.
    assert s.wilcoxon_stat == pytest.approx(1.0)
    assert (s.wins_a, s.wins_b, s.ties) == (4, 1, 0)
    assert s.mean_a == pytest.approx(11.0) and s.mean_b == pytest.approx(9.4)


def test_matches_scipy_on_a_fixed_table():
    rng = np.random.default_rng(7)
    base = rng.normal(0.78, 0.01, size=8)
    table = pd.DataFrame(
        {
            "variant": np.repeat(["linear", "grn", "grkan"], 8),
            "seed": np.tile(np.arange(8), 3),
            "test_metric": np.concatenate(
                [
                    base - 0.01 + rng.normal(0, 0.004, 8),
                    base + rng.normal(0, 0.004, 8),
                    base + 0.002 + rng.normal(0, 0.004, 8),
                ]
            ),
        }
    )
    out = pairwise(table, metric="R²")
    assert list(zip(out["a"], out["b"])) == [("linear", "grn"), ("linear", "grkan"), ("grn", "grkan")]
    for _, row in out.iterrows():
        x = table[table.variant == row.a].sort_values("seed").test_metric.to_numpy()
        y = table[table.variant == row.b].sort_values("seed").test_metric.to_numpy()
        t = sps.ttest_rel(x, y)
        w = sps.wilcoxon(x, y)
        assert row.t_stat == pytest.approx(t.statistic) and row.t_p == pytest.approx(t.pvalue)
        assert row.wilcoxon_stat == pytest.approx(w.statistic) and row.wilcoxon_p == pytest.approx(w.pvalue)
        ci = sps.t.interval(0.95, len(x) - 1, loc=np.mean(x - y), scale=sps.sem(x - y))
        assert (row.ci_low, row.ci_high) == (pytest.approx(ci[0]), pytest.approx(ci[1]))
        assert row.significant == (t.pvalue < 0.05)
        assert row.a in row.verdict and row.b in row.verdict


def test_five_seeds_wilcoxon_cannot_reach_005_and_verdict_says_power_is_low():
    s = paired_stats([1, 2, 3, 4, 5], [0, 0, 0, 0, 0], a="grkan", b="linear")
    assert s.wilcoxon_p == pytest.approx(2 / 32)  # exact two-sided minimum with 5 pairs
    assert s.significant  # the t-test decides
    line = verdict(s, "R²")
    assert line.startswith("grkan beats linear")


def test_not_significant_verdict_is_explicit():
    s = paired_stats(A, B, a="grkan", b="grn")
    line = verdict(s, "R²")
    assert line.startswith("No significant difference between grkan and grn")
    assert "little power" in line and "better in 4 vs 1 of 5 seeds" in line and "(grkan - grn)" in line


def test_when_b_wins_the_line_is_written_from_its_side():
    s = paired_stats([1.0, 1.1, 0.9, 1.2, 1.0], [2.0, 2.1, 2.2, 2.05, 2.3], a="linear", b="grkan")
    line = verdict(s, "R²")
    assert line.startswith("grkan beats linear: difference +1.") and "better in 5 vs 0 of 5 seeds" in line
    f = s.flipped()
    assert (f.ci_low, f.ci_high) == (-s.ci_high, -s.ci_low) and f.flipped() == s


def test_lower_is_better_flips_wins_and_winner():
    s = paired_stats([1.0, 1.1, 0.9, 1.2], [2.0, 2.1, 2.2, 2.05], a="grkan", b="grn", higher_is_better=False)
    assert (s.wins_a, s.wins_b) == (4, 0)
    assert verdict(s, "rmse").startswith("grkan beats grn")


def test_nan_pairs_are_left_out_and_small_n_is_reported():
    s = paired_stats([1.0, float("nan"), 3.0], [0.5, 1.0, float("nan")], a="a", b="b")
    assert s.n == 1 and math.isnan(s.t_p)
    assert "not enough paired seeds" in verdict(s)


def test_identical_and_constant_differences():
    same = paired_stats([0.7, 0.8, 0.9], [0.7, 0.8, 0.9])
    assert same.t_p == 1.0 and same.wilcoxon_p == 1.0 and same.ties == 3 and not same.significant
    shifted = paired_stats([1.0, 2.0, 3.0], [0.5, 1.5, 2.5])
    assert shifted.ci_low == shifted.ci_high == pytest.approx(0.5) and shifted.significant


def test_bad_inputs_raise_validation_errors():
    with pytest.raises(ValidationError, match="same length"):
        paired_stats([1, 2], [1, 2, 3])
    with pytest.raises(ValidationError, match="confidence"):
        paired_stats([1, 2], [1, 2], confidence=95)
    dup = pd.DataFrame({"variant": ["a", "a"], "seed": [0, 0], "test_metric": [1.0, 2.0]})
    with pytest.raises(ValidationError, match="same"):
        pairwise(dup)
    with pytest.raises(ValidationError, match="missing"):
        pairwise(dup.drop(columns="seed"))


def test_summary_and_headline():
    table = pd.DataFrame({"variant": ["x"] * 5 + ["y"] * 5, "seed": list(range(5)) * 2, "test_metric": A + B})
    summ = summary(table)
    row = summ.set_index("variant").loc["x"]
    assert row["n"] == 5 and row["mean"] == pytest.approx(11.0) and row["std"] == pytest.approx(np.std(A, ddof=1))
    lo, hi = sps.t.interval(0.95, 4, loc=11.0, scale=sps.sem(A))
    assert (row.ci_low, row.ci_high) == (pytest.approx(lo), pytest.approx(hi))
    line = headline(table, metric="R²")
    assert "x and y" in line and "No significant difference" in line
    assert headline(table[table.variant == "x"]).startswith("Only one variant")


def test_summary_clips_the_interval_to_what_the_metric_can_take():
    near_one = pd.DataFrame({"variant": ["x"] * 3, "test_metric": [0.999, 0.90, 0.998]})
    lo, hi = sps.t.interval(0.95, 2, loc=near_one.test_metric.mean(), scale=sps.sem(near_one.test_metric))
    assert hi > 1.0  # the raw t-interval reaches past the best possible R²
    row = summary(near_one, bounds=(-np.inf, 1.0)).iloc[0]
    assert row.ci_high == 1.0 and row.ci_low == pytest.approx(lo)
    row = summary(near_one.assign(test_metric=[0.001, 0.1, 0.002]), bounds=(0.0, 1.0)).iloc[0]
    assert row.ci_low == 0.0 and row.ci_high < 1.0
