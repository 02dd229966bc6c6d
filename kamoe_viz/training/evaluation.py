"""Loss, batched inference and scores: shared by the trainer, ``evaluate`` and ``predict``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F

from kamoe_viz import metrics as M
from kamoe_viz.errors import ValidationError

if TYPE_CHECKING:
    from kamoe_viz.data.base import Dataset
    from kamoe_viz.nn.moe import KAMoE
    from kamoe_viz.training.results import TrainedRun

EVAL_BATCH = 8192
SPLITS = ("train", "val", "test")


def model_device(model: torch.nn.Module) -> torch.device:
    for p in model.parameters():
        return p.device
    return torch.device("cpu")


def task_loss(task: str, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """MSE on (scaled) regression targets, cross-entropy on class logits; sequence outputs are flattened."""
    if task == "classification":
        return F.cross_entropy(output.reshape(-1, output.shape[-1]), target.reshape(-1))
    return F.mse_loss(output, target)


def target_tensor(task: str, y: np.ndarray, device: torch.device) -> torch.Tensor:
    dtype = torch.int64 if task == "classification" else torch.float32
    return torch.as_tensor(np.ascontiguousarray(y), dtype=dtype).to(device)


def input_tensor(X: np.ndarray, device: torch.device) -> torch.Tensor:
    return torch.as_tensor(np.ascontiguousarray(X), dtype=torch.float32).to(device)


def check_input(model: KAMoE, X: np.ndarray, field: str = "X") -> None:
    """The shape a model needs: (n, F) for tabular models, (n, T, F) for sequence models."""
    X = np.asarray(X)
    want_ndim = 3 if getattr(model, "is_sequence", False) else 2
    n_features = getattr(model, "n_features", X.shape[-1] if X.ndim else 0)
    if X.ndim != want_ndim or X.shape[-1] != n_features:
        shape = f"(n, {model.seq_len}, {n_features})" if want_ndim == 3 else f"(n, {n_features})"
        raise ValidationError(field, f"array of shape {X.shape}", f"must have shape {shape} for this model")
    if want_ndim == 3 and model.seq_len is not None and X.shape[1] != model.seq_len and model.flatten_input:
        raise ValidationError(field, f"array of shape {X.shape}", f"must have windows of {model.seq_len} steps")


@torch.no_grad()
def batched_outputs(
    model: torch.nn.Module, X: torch.Tensor, batch_size: int = EVAL_BATCH, fields: tuple[str, ...] = ("prediction",)
) -> dict[str, Any]:
    """Named model outputs for every row of X (already on the model's device), in eval mode, batch by batch.
    The field ``aux`` gives a dict of the scalar auxiliary outputs (balance loss, ...), averaged over the batches
    weighted by their rows."""
    was_training = model.training
    model.eval()
    try:
        tensors = [f for f in fields if f != "aux"]
        parts: dict[str, list[torch.Tensor]] = {f: [] for f in tensors}
        aux_sums: dict[str, torch.Tensor] = {}
        for start in range(0, X.shape[0], batch_size):
            xb = X[start : start + batch_size]
            out = model(xb)
            for f in tensors:
                parts[f].append(getattr(out, f))
            for key, value in (getattr(out, "aux", None) or {}).items() if "aux" in fields else ():
                aux_sums[key] = aux_sums.get(key, 0.0) + value.detach() * xb.shape[0]
        result: dict[str, Any] = {f: torch.cat(v) if v else torch.empty(0, device=X.device) for f, v in parts.items()}
        if "aux" in fields:
            result["aux"] = {k: v / max(1, X.shape[0]) for k, v in aux_sums.items()}
        return result
    finally:
        model.train(was_training)


def predict(model: KAMoE, X: np.ndarray, batch_size: int = 4096) -> dict[str, np.ndarray]:
    """Model outputs as numpy: ``prediction`` (scaled units; logits for classification), ``gate_weights``,
    ``expert_outputs`` and, for classifiers, ``probabilities``. Runs on the model's device in eval mode."""
    check_input(model, X)
    device = model_device(model)
    x = input_tensor(X, device)
    fields = ("prediction", "gate_weights", "expert_outputs")
    out = batched_outputs(model, x, max(1, int(batch_size)), fields)
    result = {f: out[f].detach().cpu().numpy() for f in fields}
    if getattr(model, "n_outputs", 1) > 1 and result["prediction"].size:
        result["probabilities"] = M.softmax(result["prediction"]).astype(np.float32)
    return result


def scores(dataset: Dataset, output: np.ndarray, y: np.ndarray) -> dict[str, float]:
    """Task metrics of a model output against scaled targets (regression scored in original units)."""
    if dataset.task == "classification":
        return M.classification_scores(y, output)
    return M.regression_scores(
        dataset.unscale_y(np.asarray(y, dtype=np.float64)), dataset.unscale_y(np.asarray(output, dtype=np.float64))
    )


def evaluate(model: KAMoE, dataset: Dataset, split: str = "test", batch_size: int = EVAL_BATCH) -> dict[str, float]:
    """Metrics of ``model`` on one split: ``r2``, ``rmse``, ``mae`` (original units) or ``accuracy``, ``log_loss``;
    plus ``loss`` (the training loss on that split)."""
    if split not in SPLITS:
        raise ValidationError("split", split, f"must be one of {', '.join(SPLITS)}")
    X, y, _ = dataset.split(split)
    if len(X) == 0:
        return {}
    device = model_device(model)
    out = batched_outputs(model, input_tensor(X, device), batch_size)["prediction"]
    target = target_tensor(dataset.task, y, device)
    same_shape = dataset.task == "classification" or out.shape == target.shape
    loss = float(task_loss(dataset.task, out, target).item()) if same_shape else float("nan")
    result = scores(dataset, out.cpu().numpy(), y)
    result["loss"] = loss
    return result


ROUTING_JSON_KEYS = (
    "nmi",
    "load",
    "load_cv",
    "max_violation",
    "gini",
    "min_load",
    "routing_entropy",
    "dropped_fraction",
)


def routing_report(run: TrainedRun) -> dict[str, Any]:
    """The routing metrics of ``train --json`` on the test split (nmi only when the dataset knows its regimes);
    empty for a model without a gate."""
    if run.model.gate is None or len(run.dataset.X_test) == 0:
        return {}
    from kamoe_viz.routing_metrics import routing_summary

    weights = predict(run.model, run.dataset.X_test)["gate_weights"]
    regimes = run.dataset.regimes_test
    if regimes is not None and weights.ndim == 3 and regimes.ndim == 1:  # one regime per window, weights per step
        weights = weights[:, -1]
    summary = routing_summary(weights, regimes, run.config.train.batch_size)
    keys = [k for k in ROUTING_JSON_KEYS if k != "nmi" or regimes is not None]
    return {k: summary[k] for k in keys}
