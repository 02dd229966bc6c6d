"""Paired statistics for multi-seed comparisons (pure numpy/scipy/pandas).

Two variants trained with the same seeds form *pairs*: seed s of variant A against seed s of variant B (same data
split, same initialisation seed). The paired differences d_s = A_s - B_s are what we test:

- mean difference and its two-sided t-based confidence interval, mean(d) +- t_{n-1} * sd(d) / sqrt(n);
- the paired t-test (``scipy.stats.ttest_rel``) and the Wilcoxon signed-rank test (``scipy.stats.wilcoxon``,
  exact for small n), both two-sided;
- win counts: how many seeds favour A, favour B, or tie.

With few seeds these tests have little power: with 5 pairs the smallest two-sided Wilcoxon p-value is 2/32 = 0.0625,
so Wilcoxon alone can never reach 0.05. The verdict therefore uses the paired t-test (and its CI) for the decision,
reports both p-values, and says plainly when the evidence is too thin.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, replace
from itertools import combinations

import numpy as np
import pandas as pd
from scipy import stats as sps

from kamoe_viz.errors import ValidationError

ALPHA = 0.05


@dataclass(frozen=True)
class PairedStats:
    """Paired comparison of variant ``a`` against variant ``b`` (difference = a - b)."""

    a: str
    b: str
    n: int  # number of complete pairs used
    mean_a: float
    mean_b: float
    mean_diff: float
    sd_diff: float
    ci_low: float
    ci_high: float
    t_stat: float
    t_p: float
    wilcoxon_stat: float
    wilcoxon_p: float
    wins_a: int
    wins_b: int
    ties: int
    confidence: float = 0.95
    higher_is_better: bool = True

    @property
    def significant(self) -> bool:
        """Paired t-test below 0.05 (equivalently: the 95% CI excludes zero)."""
        return bool(np.isfinite(self.t_p) and self.t_p < ALPHA)

    def flipped(self) -> PairedStats:
        """The same comparison seen from b's side (difference = b - a)."""
        return replace(
            self,
            a=self.b,
            b=self.a,
            mean_a=self.mean_b,
            mean_b=self.mean_a,
            mean_diff=-self.mean_diff,
            ci_low=-self.ci_high,
            ci_high=-self.ci_low,
            t_stat=-self.t_stat,
            wins_a=self.wins_b,
            wins_b=self.wins_a,
        )

    def to_dict(self) -> dict:
        d = asdict(self)
        d["significant"] = self.significant
        return d


def paired_stats(
    a_values: Sequence[float],
    b_values: Sequence[float],
    *,
    a: str = "A",
    b: str = "B",
    confidence: float = 0.95,
    higher_is_better: bool = True,
) -> PairedStats:
    """Paired statistics of two equally long sequences; pairs with a NaN/inf on either side are left out."""
    x = np.asarray(a_values, dtype=float)
    y = np.asarray(b_values, dtype=float)
    if x.shape != y.shape or x.ndim != 1:
        raise ValidationError("paired values", (x.shape, y.shape), "must be two 1-D sequences of the same length")
    if not 0.0 < confidence < 1.0:
        raise ValidationError("confidence", confidence, "must be between 0 and 1 (e.g. 0.95)")
    keep = np.isfinite(x) & np.isfinite(y)
    x, y = x[keep], y[keep]
    n = len(x)
    d = x - y
    nan = float("nan")
    mean_a = float(x.mean()) if n else nan
    mean_b = float(y.mean()) if n else nan
    mean_diff = float(d.mean()) if n else nan
    sd = float(d.std(ddof=1)) if n >= 2 else nan
    ci_low = ci_high = t_stat = t_p = w_stat = w_p = nan
    if n >= 2:
        if sd == 0.0:
            # Every pair differs by the same amount: no spread, the interval collapses onto the difference.
            ci_low = ci_high = mean_diff
            if mean_diff == 0.0:
                t_stat, t_p = 0.0, 1.0
            else:
                t_stat, t_p = math.copysign(math.inf, mean_diff), 0.0
        else:
            half = float(sps.t.ppf(0.5 + confidence / 2.0, n - 1)) * sd / math.sqrt(n)
            ci_low, ci_high = mean_diff - half, mean_diff + half
            res = sps.ttest_rel(x, y)
            t_stat, t_p = float(res.statistic), float(res.pvalue)
        if np.all(d == 0.0):
            w_stat, w_p = 0.0, 1.0
        else:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                res = sps.wilcoxon(x, y, alternative="two-sided")
            w_stat, w_p = float(res.statistic), float(res.pvalue)
    better = d > 0 if higher_is_better else d < 0
    worse = d < 0 if higher_is_better else d > 0
    return PairedStats(
        a=a,
        b=b,
        n=n,
        mean_a=mean_a,
        mean_b=mean_b,
        mean_diff=mean_diff,
        sd_diff=sd,
        ci_low=ci_low,
        ci_high=ci_high,
        t_stat=t_stat,
        t_p=t_p,
        wilcoxon_stat=w_stat,
        wilcoxon_p=w_p,
        wins_a=int(better.sum()),
        wins_b=int(worse.sum()),
        ties=int((d == 0).sum()),
        confidence=confidence,
        higher_is_better=higher_is_better,
    )


def _fmt(value: float, digits: int = 3) -> str:
    if not np.isfinite(value):
        return "n/a"
    return f"{value:+.{digits}f}"


def _fmt_p(p: float) -> str:
    """``p = 0.123``, ``p < 0.001`` or ``p n/a``."""
    if not np.isfinite(p):
        return "p n/a"
    return "p < 0.001" if p < 0.001 else f"p = {p:.3f}"


def verdict(s: PairedStats, metric: str = "metric", unit: str = "seeds") -> str:
    """One plain-words line: who is better and whether the difference is significant.

    ``unit`` names what the pairs are ("seeds", or "paired runs" when pairs are configuration + seed). When the
    second variant wins, the line is written from its side, so the difference shown is always winner - loser.
    """
    if s.n < 2:
        return (
            f"{s.a} vs {s.b}: not enough paired {unit} ({s.n}) for a test; run at least 2 "
            f"(5 or more for a useful answer)."
        )
    if s.significant and (s.mean_diff > 0) != s.higher_is_better:
        s = s.flipped()
    ci = f"{round(s.confidence * 100)}% CI {_fmt(s.ci_low)} to {_fmt(s.ci_high)}"
    numbers = (
        f"difference {_fmt(s.mean_diff)} {metric} ({ci}; paired t {_fmt_p(s.t_p)}, "
        f"Wilcoxon {_fmt_p(s.wilcoxon_p)}; better in {s.wins_a} vs {s.wins_b} of {s.n} {unit})"
    )
    if s.significant:
        line = f"{s.a} beats {s.b}: {numbers}."
        if s.n < 5:
            line += f" Only {s.n} {unit}: treat this as a hint and confirm with more."
        return line
    line = f"No significant difference between {s.a} and {s.b} ({s.a} - {s.b}): {numbers}."
    if s.n < 10:
        line += (
            f" With only {s.n} {unit} the test has little power, so a small real difference could be "
            f"missed; add seeds for a firmer answer."
        )
    return line


def _pairs_frame(table: pd.DataFrame, value: str, by: str, pair_on: str) -> pd.DataFrame:
    missing = [c for c in (value, by, pair_on) if c not in table.columns]
    if missing:
        raise ValidationError("results table", missing[0], f"column is missing; have {', '.join(table.columns)}")
    dup = table.duplicated(subset=[by, pair_on])
    if dup.any():
        row = table.loc[dup, [by, pair_on]].iloc[0].tolist()
        raise ValidationError(
            "results table",
            row,
            f"has two rows for the same ({by}, {pair_on}); pairing needs one value per variant and seed",
        )
    return table.pivot(index=pair_on, columns=by, values=value)


def pairwise(
    table: pd.DataFrame,
    value: str = "test_metric",
    by: str = "variant",
    pair_on: str = "seed",
    order: Iterable[str] | None = None,
    *,
    confidence: float = 0.95,
    higher_is_better: bool = True,
    metric: str | None = None,
    unit: str = "seeds",
) -> pd.DataFrame:
    """Paired statistics for every pair of variants in a tidy table (one row per variant and seed).

    Rows are ordered as ``order`` (default: order of first appearance) and each pair (a, b) has a before b.
    Returns one row per pair with the fields of :class:`PairedStats`, ``significant`` and ``verdict``.
    """
    wide = _pairs_frame(table, value, by, pair_on)
    names = list(order) if order is not None else list(dict.fromkeys(table[by].tolist()))
    names = [n for n in names if n in wide.columns]
    rows = []
    for a, b in combinations(names, 2):
        s = paired_stats(
            wide[a].to_numpy(float),
            wide[b].to_numpy(float),
            a=str(a),
            b=str(b),
            confidence=confidence,
            higher_is_better=higher_is_better,
        )
        row = s.to_dict()
        row["verdict"] = verdict(s, metric or value, unit)
        rows.append(row)
    columns = list(PairedStats.__dataclass_fields__) + ["significant", "verdict"]
    return pd.DataFrame(rows, columns=columns)


def summary(
    table: pd.DataFrame,
    value: str = "test_metric",
    by: str = "variant",
    order: Iterable[str] | None = None,
    confidence: float = 0.95,
    bounds: tuple[float, float] = (-math.inf, math.inf),
) -> pd.DataFrame:
    """Per variant: n (finite values), mean, std (ddof=1), standard error, t-based CI of the mean, min, max.

    ``bounds``: the values the metric can take (R² at most 1, accuracy in [0, 1]); the CI is clipped to them, since
    a t-interval around a mean near a bound can reach past it."""
    if value not in table.columns or by not in table.columns:
        raise ValidationError("results table", value if value not in table.columns else by, "column is missing")
    names = list(order) if order is not None else list(dict.fromkeys(table[by].tolist()))
    rows = []
    for name in names:
        v = table.loc[table[by] == name, value].to_numpy(float)
        v = v[np.isfinite(v)]
        n = len(v)
        mean = float(v.mean()) if n else float("nan")
        std = float(v.std(ddof=1)) if n >= 2 else float("nan")
        sem = std / math.sqrt(n) if n >= 2 else float("nan")
        half = float(sps.t.ppf(0.5 + confidence / 2.0, n - 1)) * sem if n >= 2 else float("nan")
        rows.append(
            {
                by: name,
                "n": n,
                "mean": mean,
                "std": std,
                "sem": sem,
                "ci_low": max(mean - half, bounds[0]),
                "ci_high": min(mean + half, bounds[1]),
                "min": float(v.min()) if n else float("nan"),
                "max": float(v.max()) if n else float("nan"),
            }
        )
    return pd.DataFrame(rows, columns=[by, "n", "mean", "std", "sem", "ci_low", "ci_high", "min", "max"])


def headline(
    table: pd.DataFrame,
    value: str = "test_metric",
    by: str = "variant",
    pair_on: str = "seed",
    *,
    higher_is_better: bool = True,
    metric: str | None = None,
) -> str:
    """The one-line answer: the best variant by mean against the runner-up, paired by seed."""
    summ = summary(table, value, by).dropna(subset=["mean"])
    if summ.empty:
        return "No finished runs with a finite metric yet."
    if len(summ) == 1:
        return f"Only one variant ({summ[by].iloc[0]}) has results; nothing to compare."
    summ = summ.sort_values("mean", ascending=not higher_is_better, kind="stable")
    best, second = str(summ[by].iloc[0]), str(summ[by].iloc[1])
    wide = _pairs_frame(table, value, by, pair_on)
    s = paired_stats(
        wide[best].to_numpy(float), wide[second].to_numpy(float), a=best, b=second, higher_is_better=higher_is_better
    )
    return verdict(s, metric or value)
