"""The tidy results of a comparison: the table's columns, the assembled frames and the verdict lines.

:func:`assemble` turns run outcomes into the table (one row per variant and seed), the training histories and the
gate samples; :class:`ComparisonResult` holds them with the statistics; :func:`routing_verdict` says in one sentence
which routing matched the regimes and which collapsed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from kamoe_viz.compare.results_file import RUN_KEY
from kamoe_viz.compare.worker import ROUTING_COLUMNS, RunOutcome
from kamoe_viz.labels import metric_label

TABLE_COLUMNS = [
    "variant",
    "kind",
    "gate",
    "expert",
    "n_experts",
    "seed",
    "data_seed",
    "dataset",
    "metric",
    "test_metric",
    "train_seconds",
    "params",
    "epochs_run",
    "best_epoch",
    "stopped_reason",
    "diverged",
    "message",
    "gate_entropy",
    "regime_nmi",
    "routing",
    *ROUTING_COLUMNS,
    "device",
    RUN_KEY,
]


@dataclass
class ComparisonResult:
    """Everything a comparison measured. ``table`` has one row per variant and seed (tidy)."""

    table: pd.DataFrame
    histories: pd.DataFrame  # variant, seed, epoch, train_loss, val_loss, ...
    gate_samples: pd.DataFrame  # variant, seed, row, expert, weight (+ regime, seed_expert): gate weights on the
    # same test rows, experts renumbered to match across seeds (see kamoe_viz.compare.matching)
    stats: pd.DataFrame  # pairwise paired statistics (see kamoe_viz.stats.pairwise)
    summary: pd.DataFrame  # per variant: n, mean, std, CI, min, max of the test metric
    verdict: str  # one plain-words line: best variant vs runner-up
    metric: str  # "r2" or "accuracy" (higher is better for both)
    config: dict[str, Any]  # the base RunConfig as a dict
    seeds: list[int]
    variants: list[str]
    vary_split: bool = False
    jobs: int = 1
    wall_seconds: float = 0.0
    started: str = ""
    extra: dict[str, Any] = field(default_factory=dict)
    expert_matching: str = ""  # how experts were matched across seeds before pooling (one line, shown with them)
    epoch_cap: str = ""  # how many runs stopped at the epoch cap rather than by early stopping; "" when none

    @property
    def metric_label(self) -> str:
        return metric_label(self.metric)

    def cost(self) -> pd.DataFrame:
        """Per variant: parameters, mean training seconds and epochs, runs that diverged."""
        t = self.table
        out = t.groupby("variant", sort=False).agg(
            params=("params", "median"),
            train_seconds=("train_seconds", "mean"),
            epochs_run=("epochs_run", "mean"),
            diverged=("diverged", "sum"),
            runs=("seed", "count"),
        )
        return out.reset_index()

    def routing_means(self) -> pd.DataFrame:
        """Per variant: mean over seeds of the routing metrics (NMI vs regimes, routing entropy, min load, load CV,
        MaxVio, Gini, dropped fraction); NaN for the plain model."""
        cols = [c for c in ("regime_nmi", "gate_entropy", *ROUTING_COLUMNS) if c in self.table.columns]
        return self.table.groupby("variant", sort=False)[cols].mean().reset_index()

    def to_csv(self) -> str:
        return self.table.to_csv(index=False)


def stats_rows(table: pd.DataFrame) -> pd.DataFrame:
    """The rows the statistics use: runs that produced a result (not those whose task failed)."""
    return table[table["stopped_reason"] != "error"] if "stopped_reason" in table.columns else table


def assemble(outcomes: list[RunOutcome]) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Tidy table, histories and gate samples from run outcomes."""
    rows = [o.row for o in outcomes]
    table = pd.DataFrame(rows)
    front = [c for c in TABLE_COLUMNS if c in table.columns]
    label_cols = [c for c in table.columns if c not in front]
    table = table[
        front[:4]
        + [c for c in label_cols if not c.startswith(("test_", "val_"))]
        + front[4:]
        + sorted(c for c in label_cols if c.startswith(("test_", "val_")))
    ]
    hist = []
    samples = []
    for o in outcomes:
        keys = {k: o.row[k] for k in o.row if k in ("variant", "seed") or k in _label_keys(o)}
        keys = dict(reversed(list(keys.items())))  # inserted at position 0 one by one: reverse to keep order
        if o.history is not None and len(o.history):
            h = o.history.copy()
            for k, v in keys.items():
                h.insert(0, k, v)
            hist.append(h)
        if o.gate_weights is not None:
            w = np.asarray(o.gate_weights)
            n, e = w.shape
            s = pd.DataFrame(
                {
                    "row": np.repeat(np.arange(n), e),
                    "expert": np.tile(np.arange(e), n),
                    "weight": w.reshape(-1).astype(float),
                }
            )
            if o.regimes is not None and len(o.regimes) >= n:
                s["regime"] = np.repeat(np.asarray(o.regimes)[:n], e)
            for k, v in keys.items():
                s.insert(0, k, v)
            samples.append(s)
    histories = pd.concat(hist, ignore_index=True) if hist else pd.DataFrame(columns=["variant", "seed", "epoch"])
    gate_samples = (
        pd.concat(samples, ignore_index=True)
        if samples
        else pd.DataFrame(columns=["variant", "seed", "row", "expert", "weight"])
    )
    return table, histories, gate_samples


def _label_keys(o: RunOutcome) -> set[str]:
    return set(o.row) - set(TABLE_COLUMNS) - {k for k in o.row if k.startswith(("test_", "val_"))}


COLLAPSED_MIN_LOAD = 0.05  # a variant whose smallest expert wins fewer rows than this (mean over seeds) collapsed


def routing_verdict(table: pd.DataFrame, variants: Sequence[str]) -> str:
    """One sentence on routing (empty without gated runs): the variant whose experts best match the regimes (NMI),
    and the variants whose routing collapsed (mean min load below :data:`COLLAPSED_MIN_LOAD`)."""
    if "min_load" not in table.columns:
        return ""
    gated = table[table["kind"] == "moe"]
    if not len(gated):
        return ""
    means = gated.groupby("variant", sort=False)[["regime_nmi", "min_load", "load_cv"]].mean()
    means = means.reindex([v for v in variants if v in means.index])
    parts = []
    nmi = means["regime_nmi"].dropna()
    if len(nmi):
        best = nmi.idxmax()
        parts.append(
            f"Experts match the regimes best with {best} (mean NMI {nmi[best]:.2f}, min load "
            f"{means.loc[best, 'min_load']:.2f})."
        )
    collapsed = [v for v in means.index if means.loc[v, "min_load"] < COLLAPSED_MIN_LOAD]
    if collapsed:
        parts.append(
            f"Routing collapsed (an expert wins < {COLLAPSED_MIN_LOAD:.0%} of the rows on average) with "
            f"{', '.join(collapsed)}."
        )
    elif not len(nmi):
        most = means["load_cv"].idxmin()
        parts.append(f"The most balanced routing is {most} (load CV {means.loc[most, 'load_cv']:.2f}).")
    return (" " + " ".join(parts)) if parts else ""
