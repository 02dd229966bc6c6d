"""Expert specialisation: who wins which rows, agreement with true regimes, per-expert error, ablation.

The **winning expert** of a row is the one with the largest gate weight. Each expert's own prediction is its
output through the model's shared head (``MoEOutput.expert_outputs``); the model's prediction is
``sum_e w_e (out_e - b) + b`` with b the head's bias, which is what the ablation recomputes with one weight
removed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from scipy.optimize import linear_sum_assignment
from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

from kamoe_viz.errors import ValidationError
from kamoe_viz.interpret._common import (
    expert_names,
    flatten_time,
    forward_numpy,
    primary_metric,
    reference_set,
    rows_of,
    softmax_np,
    task_metrics,
)

if TYPE_CHECKING:
    from kamoe_viz.data.base import Dataset
    from kamoe_viz.nn.moe import KAMoE

ABLATION_MODES = {
    "zeroed": "expert k's gate weight set to 0, the other weights unchanged",
    "renormalised": "expert k's weight set to 0 and the remaining weights divided by their sum so they again sum "
    "to 1 (softmax gates only; rows routed only to expert k keep its weight at 0)",
}


def _labels(
    dataset: Dataset, regimes: np.ndarray | None, y: np.ndarray, n_rows: int
) -> tuple[np.ndarray | None, list, str]:
    """Ground truth to compare routing with: regimes when known, else classes; (labels, names, kind)."""
    reg = rows_of(regimes, n_rows)
    if reg is not None and np.any(np.asarray(reg) >= 0):
        names = dataset.regime_names or [f"regime {r}" for r in range(int(np.max(reg)) + 1)]
        return np.asarray(reg).astype(int), list(names), "regime"
    if dataset.task == "classification":
        labels: np.ndarray | None = flatten_time(np.asarray(y).reshape(len(y), -1), 1).reshape(-1)
        labels = rows_of(labels, n_rows)
        names = dataset.class_names or [str(c) for c in range(dataset.n_outputs)]
        return np.asarray(labels).astype(int), list(names), "class"
    return None, [], ""


def routing_table(model: KAMoE, dataset: Dataset, split: str = "test", max_rows: int | None = None) -> pd.DataFrame:
    """One row per input (per time step for sequence outputs): target, prediction, gate weights, each expert's
    own prediction, winning expert, and the true regime/class where known (``truth``, -1 unknown).

    Regression values are in the target's original units; classification columns hold class indices and the
    expert/prediction columns hold the probability of the true class.
    """
    X, y, regimes, idx = reference_set(dataset, split, max_rows)
    out = forward_numpy(model, X)
    weights = flatten_time(out.gate_weights, 1)
    n, e = weights.shape
    outputs = flatten_time(out.expert_outputs, 2)  # (n, O, E)
    pred = flatten_time(out.prediction, 1)  # (n, O)
    names = expert_names(e)
    steps = n // len(X)
    frame = pd.DataFrame({"row": np.repeat(idx, steps)})
    if steps > 1:
        frame["step"] = np.tile(np.arange(steps), len(X))
    if dataset.task == "classification":
        labels: np.ndarray | None = np.asarray(y).reshape(-1).astype(int)
        labels = rows_of(labels, n)
        frame["target"] = labels
        frame["prediction"] = softmax_np(pred)[np.arange(n), labels]
        frame["predicted_class"] = pred.argmax(axis=1)
        for k, name in enumerate(names):
            frame[f"{name} output"] = softmax_np(outputs[:, :, k])[np.arange(n), labels]
    else:
        frame["target"] = dataset.unscale_y(np.asarray(y, dtype=np.float64).reshape(-1))
        frame["prediction"] = dataset.unscale_y(pred[:, 0].astype(np.float64))
        for k, name in enumerate(names):
            frame[f"{name} output"] = dataset.unscale_y(outputs[:, 0, k].astype(np.float64))
    for k, name in enumerate(names):
        frame[f"{name} weight"] = weights[:, k]
    frame["winner"] = weights.argmax(axis=1)
    truth, truth_names, kind = _labels(dataset, regimes, y, n)
    frame["truth"] = truth if truth is not None else -1
    frame.attrs.update({"truth_kind": kind, "truth_names": truth_names, "n_experts": e, "task": dataset.task})
    return frame


def contingency(table: pd.DataFrame) -> pd.DataFrame:
    """Long frame truth × winning expert: count, share of the truth group (row share) and of the expert."""
    names = table.attrs.get("truth_names", [])
    e = table.attrs.get("n_experts", int(table["winner"].max()) + 1)
    known = table[table["truth"] >= 0]
    counts = pd.crosstab(known["truth"], known["winner"]).reindex(columns=range(e), fill_value=0)
    long = counts.stack().rename("count").reset_index()
    long.columns = ["truth", "winner", "count"]
    long["truth_name"] = [names[t] if t < len(names) else f"{t}" for t in long["truth"]]
    long["expert"] = [f"expert {k}" for k in long["winner"]]
    long["share_of_truth"] = long["count"] / long.groupby("truth")["count"].transform("sum").clip(lower=1)
    long["share_of_expert"] = long["count"] / long.groupby("winner")["count"].transform("sum").clip(lower=1)
    return long[["truth", "truth_name", "winner", "expert", "count", "share_of_truth", "share_of_expert"]]


def agreement(table: pd.DataFrame) -> dict[str, float]:
    """How well the winning expert matches the true regimes/classes.

    nmi: normalised mutual information (0 = unrelated, 1 = same partition up to renaming);
    ari: adjusted Rand index (0 = chance, 1 = identical); matched_accuracy: share of rows where the winner is
    the expert matched to the row's truth by the best one-to-one assignment (Hungarian method).
    """
    known = table[table["truth"] >= 0]
    if known.empty:
        return {"nmi": float("nan"), "ari": float("nan"), "matched_accuracy": float("nan"), "rows": 0}
    truth, winner = known["truth"].to_numpy(), known["winner"].to_numpy()
    counts = pd.crosstab(truth, winner).to_numpy()
    rows, cols = linear_sum_assignment(-counts)
    return {
        "nmi": float(normalized_mutual_info_score(truth, winner)),
        "ari": float(adjusted_rand_score(truth, winner)),
        "matched_accuracy": float(counts[rows, cols].sum() / counts.sum()),
        "rows": len(known),
    }


def _metrics(dataset: Dataset, table: pd.DataFrame, column: str, mask: np.ndarray) -> dict[str, float]:
    sub = table[mask]
    if dataset.task == "classification":
        prob = np.clip(sub[column].to_numpy(dtype=np.float64), 1e-12, 1)
        return {"log_loss": float(-np.mean(np.log(prob))) if len(sub) else float("nan")}
    err = sub[column].to_numpy(dtype=np.float64) - sub["target"].to_numpy(dtype=np.float64)
    return {
        "rmse": float(np.sqrt(np.mean(err**2))) if len(sub) else float("nan"),
        "mae": float(np.mean(np.abs(err))) if len(sub) else float("nan"),
    }


def expert_errors(dataset: Dataset, table: pd.DataFrame) -> pd.DataFrame:
    """Per expert: rows won, and the error of its own prediction on the rows it wins vs on all rows (and the
    mixture's error on its rows). Regression: RMSE/MAE in target units; classification: log loss of the true
    class."""
    e = table.attrs.get("n_experts", int(table["winner"].max()) + 1)
    everything = np.ones(len(table), bool)
    metric = "log_loss" if dataset.task == "classification" else "rmse"
    rows = []
    for k in range(e):
        won = table["winner"].to_numpy() == k
        col = f"expert {k} output"
        rows.append(
            {
                "expert": f"expert {k}",
                "rows_won": int(won.sum()),
                "share_won": float(won.mean()),
                f"{metric}_on_won_rows": _metrics(dataset, table, col, won)[metric],
                f"{metric}_on_all_rows": _metrics(dataset, table, col, everything)[metric],
                f"mixture_{metric}_on_won_rows": _metrics(dataset, table, "prediction", won)[metric],
            }
        )
    return pd.DataFrame(rows)


def expert_vs_target(table: pd.DataFrame, max_points: int = 1500, seed: int = 0) -> pd.DataFrame:
    """Long frame for the output-vs-target scatter: row, expert, target, output, weight, won."""
    if len(table) > max_points:
        table = table.sample(n=max_points, random_state=seed)
    e = table.attrs.get("n_experts", int(table["winner"].max()) + 1)
    frames = [
        pd.DataFrame(
            {
                "row": table["row"].to_numpy(),
                "expert": f"expert {k}",
                "target": table["target"].to_numpy(),
                "output": table[f"expert {k} output"].to_numpy(),
                "weight": table[f"expert {k} weight"].to_numpy(),
                "won": table["winner"].to_numpy() == k,
            }
        )
        for k in range(e)
    ]
    return pd.concat(frames, ignore_index=True)


def ablation(model: KAMoE, dataset: Dataset, split: str = "test", max_rows: int | None = None) -> pd.DataFrame:
    """The task metrics when one expert is removed from the mixture (see :data:`ABLATION_MODES`), next to the
    full model ('none' removed). Recomputed from the gate weights and the experts' outputs of one forward pass."""
    if model.gate is None or model.n_experts < 2:
        raise ValidationError("model", "single expert", "ablation needs a mixture with at least 2 experts")
    X, y, _, _ = reference_set(dataset, split, max_rows)
    out = forward_numpy(model, X)
    w = flatten_time(out.gate_weights, 1).astype(np.float64)
    outs = flatten_time(out.expert_outputs, 2).astype(np.float64)  # (n, O, E)
    bias = model.head.bias.detach().cpu().numpy().astype(np.float64)
    target = y if dataset.task == "classification" else np.asarray(y).reshape(-1)

    def mix(weights: np.ndarray) -> np.ndarray:
        return np.einsum("ne,noe->no", weights, outs - bias[None, :, None]) + bias

    modes = ["zeroed"] + (["renormalised"] if model.config.gate_activation == "softmax" else [])
    name, higher = primary_metric(dataset)
    base = task_metrics(dataset, mix(w), target)
    rows = [{"removed": "none", "mode": "full model", **base}]
    for k in range(w.shape[1]):
        for mode in modes:
            ww = w.copy()
            ww[:, k] = 0.0
            if mode == "renormalised":
                total = ww.sum(axis=1, keepdims=True)
                ww = np.where(total > 1e-12, ww / np.where(total > 1e-12, total, 1.0), ww)
            rows.append({"removed": f"expert {k}", "mode": mode, **task_metrics(dataset, mix(ww), target)})
    frame = pd.DataFrame(rows)
    sign = -1.0 if higher else 1.0
    frame[f"{name}_change"] = frame[name] - base[name]
    frame["harm"] = sign * frame[f"{name}_change"]  # > 0: removing the expert makes the model worse
    frame.attrs.update({"metric": name, "higher_is_better": higher})
    return frame
