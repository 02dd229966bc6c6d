"""A finished comparison as tracked runs: one parent run (settings, per-variant summary) and one child run per
variant and seed (its per-epoch losses, final metrics, routing metrics and load of its gate-weight sample)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from kamoe_viz.tracking.core import EPOCH_KEYS, Tracker, config_params, finite_metrics


def _run_keys(histories: pd.DataFrame, table: pd.DataFrame) -> list[str]:
    """The columns naming one run (variant, seed and any label columns): in front of ``epoch`` in the histories."""
    cols = list(histories.columns)
    front = cols[: cols.index("epoch")] if "epoch" in cols else ["variant", "seed"]
    return [c for c in front if c in table.columns] or ["variant", "seed"]


def _select(frame: pd.DataFrame, row: pd.Series, keys: list[str]) -> pd.DataFrame:
    if not len(frame) or any(k not in frame.columns for k in keys):
        return frame.iloc[0:0]
    mask = np.ones(len(frame), dtype=bool)
    for k in keys:
        mask &= (frame[k] == row[k]).to_numpy()
    return frame[mask]


def log_comparison(
    result: Any,
    *,
    mlflow: bool = False,
    tensorboard: str | None = None,
    experiment: str = "kamoe-viz",
    run_name: str | None = None,
) -> list[str]:
    """Write ``result`` (a :class:`kamoe_viz.compare.ComparisonResult`); returns the child run names."""
    base = config_params(result.config)
    name = run_name or f"compare {result.config.get('data', {}).get('name', '')}".strip()
    parent = Tracker.open(
        {
            **base,
            "compare.variants": ",".join(map(str, result.variants)),
            "compare.seeds": ",".join(map(str, result.seeds)),
            "compare.metric": result.metric,
            "compare.vary_split": str(result.vary_split),
        },
        name,
        mlflow=mlflow,
        tensorboard=tensorboard,
        experiment=experiment,
    )
    names: list[str] = []
    try:
        for _, s in result.summary.iterrows():
            parent.log_metrics(
                finite_metrics(
                    {f"summary/{s['variant']}/{k}": s[k] for k in ("mean", "std", "ci_low", "ci_high") if k in s}
                ),
                0,
            )
        table, histories, samples = result.table, result.histories, result.gate_samples
        keys = _run_keys(histories, table)
        for _, row in table.iterrows():
            child_name = "_".join(f"{k}{row[k]}" if k == "seed" else str(row[k]) for k in keys)
            child = Tracker.open(
                {**base, **{f"run.{k}": str(row[k]) for k in keys}},
                f"{name}/{child_name}",
                mlflow=mlflow,
                tensorboard=tensorboard,
                experiment=experiment,
                parent=parent,
            )
            status = "FINISHED"
            try:
                for _, h in _select(histories, row, keys).iterrows():
                    child.log_metrics(finite_metrics({k: h[k] for k in EPOCH_KEYS if k in h}), int(h["epoch"]))
                step = int(row["epochs_run"]) if "epochs_run" in row and pd.notna(row["epochs_run"]) else 0
                final = {("best_" + k if k in EPOCH_KEYS else k): row[k] for k in table.columns if k not in keys}
                child.log_metrics(finite_metrics(final), step)
                weights = _select(samples, row, keys)
                if len(weights):
                    w = weights.pivot_table(index="row", columns="expert", values="weight").to_numpy()
                    child.log_routing(w, step)
                if bool(row.get("diverged", False)):
                    status = "FAILED"
            finally:
                child.close(status)
            names.append(child_name)
    finally:
        parent.close()
    return names
