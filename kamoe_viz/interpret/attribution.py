"""Which input features drive each expert's gate weight and the prediction (Captum).

Two methods, on the model's (standardised) inputs, reported per original feature:

- **Integrated Gradients** (IG): attributions along the straight path from a baseline to the row; they add up to
  f(row) - f(baseline) up to the *convergence delta*, which is reported.
- **Feature Ablation**: f(row) - f(row with the feature set to its baseline value), one feature at a time.

Baselines: ``mean`` = every feature at its training mean; ``zeros`` = every feature at 0 in its original units.
These are attributions of the whole model's function, not the spline importances of the KAN edges.
For sequence windows a feature's attribution is summed over the window's time steps.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import torch
from captum.attr import FeatureAblation, IntegratedGradients

from kamoe_viz.errors import ValidationError
from kamoe_viz.interpret._common import (
    check_split,
    expert_names,
    feature_names,
    raw_to_scaled,
    reference_set,
    to_tensor,
)

if TYPE_CHECKING:
    from kamoe_viz.data.base import Dataset
    from kamoe_viz.nn.moe import KAMoE

BASELINES = {"mean": "every feature at its training-set mean", "zeros": "every feature at 0 in its original units"}
METHODS = {"ig": "Integrated Gradients", "ablation": "Feature Ablation"}
IG_METHOD = "riemann_trapezoid"  # robust on the kinks of ReLU networks and KAN grids (Gauss-Legendre is not)
NOT_SPLINES_NOTE = (
    "Captum attributions explain the whole model's output per input feature; they are not the "
    "spline importances (mean |φ(x)| of single KAN edges) of the Splines page."
)


CONVERGED_DELTA = 0.05  # IG has converged when its mean |delta| is at most this share of the mean output change


def attribution_targets(model: KAMoE) -> list[str]:
    """What can be explained: the prediction and each expert's gate weight."""
    targets = ["prediction"]
    if model.gate is not None:
        targets += [f"gate weight: {name}" for name in expert_names(model.n_experts)]
    return targets


def _forward_for(model: KAMoE, target: str) -> tuple[Callable[[torch.Tensor], torch.Tensor], bool]:
    """(function x -> (B, K) outputs, is_classification_prediction)."""
    if target == "prediction":

        def predict(x: torch.Tensor) -> torch.Tensor:
            out = model(x).prediction
            return out[:, -1] if out.ndim == 3 else out

        return predict, True
    for k, name in enumerate(expert_names(model.n_experts)):
        if target == f"gate weight: {name}" and model.gate is not None:

            def gate(x: torch.Tensor, k: int = k) -> torch.Tensor:
                w = model.gate_weights(x)
                w = w[:, -1] if w.ndim == 3 else w
                return w[:, k : k + 1]

            return gate, False
    raise ValidationError("attribution target", target, f"must be one of {', '.join(attribution_targets(model))}")


def baseline_row(dataset: Dataset, baseline: str) -> np.ndarray:
    """The baseline in the model's input space, shaped like one row (F,) or one window (T, F)."""
    if baseline not in BASELINES:
        raise ValidationError("baseline", baseline, "must be mean (training mean) or zeros (0 in original units)")
    nf = dataset.n_features
    if baseline == "mean":
        row = dataset.X_train.reshape(-1, nf).mean(axis=0)
    else:
        row = raw_to_scaled(dataset, np.zeros(nf))
    row = np.asarray(row, dtype=np.float32)
    if dataset.is_sequence and dataset.seq_len is not None:
        row = np.broadcast_to(row, (dataset.seq_len, nf)).copy()
    return row


def _class_targets(model: KAMoE, forward: Callable, x: torch.Tensor, is_prediction: bool, task: str):
    """Captum ``target``: output 0, or for classification predictions the predicted class of each row."""
    if is_prediction and task == "classification":
        with torch.no_grad():
            return forward(x).argmax(dim=1)
    return 0


def _attribute(
    model: KAMoE, dataset: Dataset, X: np.ndarray, target: str, baseline: str, n_steps: int, methods: tuple[str, ...]
) -> dict[str, Any]:
    for m in methods:
        if m not in METHODS:
            raise ValidationError("method", m, "must be ig or ablation")
    was_training = model.training
    model.eval()
    try:
        forward, is_prediction = _forward_for(model, target)
        x = to_tensor(model, X)
        base = to_tensor(model, np.broadcast_to(baseline_row(dataset, baseline), X.shape).copy())
        cls = _class_targets(model, forward, x, is_prediction, dataset.task)
        result: dict[str, Any] = {}
        with torch.no_grad():
            fx = forward(x)
            fb = forward(base)
        pick = (lambda t: t.gather(1, cls.view(-1, 1))[:, 0]) if isinstance(cls, torch.Tensor) else (lambda t: t[:, 0])
        result["f_x"] = pick(fx).cpu().numpy()
        result["f_baseline"] = pick(fb).cpu().numpy()
        if "ig" in methods:
            ig = IntegratedGradients(forward)
            attr, delta = ig.attribute(
                x,
                baselines=base,
                target=cls,
                n_steps=n_steps,
                method=IG_METHOD,
                internal_batch_size=max(len(X) * 8, 256),
                return_convergence_delta=True,
            )
            result["ig"] = attr.detach().cpu().numpy()
            result["delta"] = delta.detach().cpu().numpy()
        if "ablation" in methods:
            mask = None
            if X.ndim == 3:  # one group per feature across all time steps
                mask = torch.arange(X.shape[2], device=x.device).expand(X.shape[1], -1).unsqueeze(0)
            ablation = FeatureAblation(forward)
            with torch.no_grad():
                result["ablation"] = (
                    ablation.attribute(x, baselines=base, target=cls, feature_mask=mask, perturbations_per_eval=4)
                    .cpu()
                    .numpy()
                )
            if X.ndim == 3:  # each group's value is repeated over its time steps: keep one copy
                result["ablation"] = result["ablation"] / X.shape[1]
    finally:
        model.train(was_training)
    return result


def _per_feature(attr: np.ndarray) -> np.ndarray:
    return attr.sum(axis=1) if attr.ndim == 3 else attr


def _relative_delta(res: dict[str, Any]) -> float:
    """Mean |IG convergence delta| over the mean |f(x) - f(baseline)|: 0 = the path integral is exact."""
    gap = np.abs(res["f_x"] - res["f_baseline"])
    return float(np.abs(res["delta"]).mean() / max(gap.mean(), 1e-12))


def global_attributions(
    model: KAMoE,
    dataset: Dataset,
    targets: list[str] | None = None,
    baseline: str = "mean",
    split: str = "test",
    max_rows: int = 400,
    n_steps: int = 64,
    methods: tuple[str, ...] = ("ig", "ablation"),
    max_steps: int | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Mean |attribution| (and mean signed attribution) per feature, target and method over a fixed subsample.

    Returns (attributions, deltas): attributions has target, method, feature, mean_abs, mean, share (mean_abs
    over the sum for that target and method); deltas has per target the mean and max |convergence delta| of IG and
    the mean |f(x) - f(baseline)| it should be compared with (``relative_delta`` = their ratio), and ``steps``.

    ``max_steps``: while IG's relative delta is above :data:`CONVERGED_DELTA`, take more steps, up to this many
    (a sharply routing gate switches within a short stretch of the path, which a coarse grid of steps misses).
    """
    X, _, _, _ = reference_set(dataset, check_split(split), max_rows, seed=3)
    feats = feature_names(dataset)
    rows, deltas = [], []
    for target in targets or attribution_targets(model):
        steps = n_steps
        res = _attribute(model, dataset, X, target, baseline, steps, methods)
        relative = _relative_delta(res) if "ig" in methods else 0.0
        while max_steps and steps < max_steps and relative > CONVERGED_DELTA:
            # the delta falls about as 1/steps on a sharp path: go straight to the steps that should be enough
            wanted = steps * relative / CONVERGED_DELTA
            steps = min(max_steps, max(2 * steps, 2 ** math.ceil(math.log2(wanted))))
            res = {**res, **_attribute(model, dataset, X, target, baseline, steps, ("ig",))}
            relative = _relative_delta(res)
        for method in methods:
            per = _per_feature(res[method])
            mean_abs = np.abs(per).mean(axis=0)
            total = mean_abs.sum()
            for f, name in enumerate(feats):
                rows.append(
                    {
                        "target": target,
                        "method": METHODS[method],
                        "feature": name,
                        "mean_abs": float(mean_abs[f]),
                        "mean": float(per[:, f].mean()),
                        "share": float(mean_abs[f] / total) if total > 0 else 0.0,
                    }
                )
        if "ig" in methods:
            gap = np.abs(res["f_x"] - res["f_baseline"])
            deltas.append(
                {
                    "target": target,
                    "mean_abs_delta": float(np.abs(res["delta"]).mean()),
                    "max_abs_delta": float(np.abs(res["delta"]).max()),
                    "mean_abs_output_change": float(gap.mean()),
                    "relative_delta": relative,
                    "steps": steps,
                    "rows": len(X),
                }
            )
    return pd.DataFrame(rows), pd.DataFrame(
        deltas,
        columns=[
            "target",
            "mean_abs_delta",
            "max_abs_delta",
            "mean_abs_output_change",
            "relative_delta",
            "steps",
            "rows",
        ],
    )


def row_attributions(
    model: KAMoE,
    dataset: Dataset,
    row: int,
    split: str = "test",
    baseline: str = "mean",
    targets: list[str] | None = None,
    n_steps: int = 128,
    methods: tuple[str, ...] = ("ig", "ablation"),
) -> pd.DataFrame:
    """Attributions for one row of a split: target, method, feature, value (original units), attribution,
    f_x, f_baseline and (IG) delta."""
    X_all, _, _ = dataset.split(check_split(split))
    if not isinstance(row, (int, np.integer)) or not 0 <= int(row) < len(X_all):
        raise ValidationError("row", row, f"must be a row number from 0 to {len(X_all) - 1} of the {split} split")
    X = X_all[int(row) : int(row) + 1]
    raw = dataset.unscale_X(X.reshape(-1, dataset.n_features))[-1]  # last step's values for windows
    feats = feature_names(dataset)
    records = []
    for target in targets or attribution_targets(model):
        res = _attribute(model, dataset, X, target, baseline, n_steps, methods)
        for method in methods:
            per = _per_feature(res[method])[0]
            for f, name in enumerate(feats):
                records.append(
                    {
                        "target": target,
                        "method": METHODS[method],
                        "feature": name,
                        "value": float(raw[f]),
                        "attribution": float(per[f]),
                        "f_x": float(res["f_x"][0]),
                        "f_baseline": float(res["f_baseline"][0]),
                        "delta": float(res["delta"][0]) if "delta" in res else np.nan,
                    }
                )
    return pd.DataFrame(records)


def ig_completeness(
    model: KAMoE,
    dataset: Dataset,
    target: str = "prediction",
    baseline: str = "mean",
    split: str = "test",
    max_rows: int = 64,
    n_steps: int = 256,
) -> pd.DataFrame:
    """Per row: sum of IG attributions, f(x) - f(baseline) and Captum's convergence delta (their difference)."""
    X, _, _, _ = reference_set(dataset, check_split(split), max_rows, seed=4)
    res = _attribute(model, dataset, X, target, baseline, n_steps, ("ig",))
    total = res["ig"].reshape(len(X), -1).sum(axis=1)
    return pd.DataFrame(
        {"attribution_sum": total, "output_change": res["f_x"] - res["f_baseline"], "delta": res["delta"]}
    )
