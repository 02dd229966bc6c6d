"""Where each KAN layer's grid sits relative to the data it sees, and moving grids onto the data.

Outside its grid a KAN edge's spline part is 0 and only the base function acts; :func:`grid_coverage_table` says
how much of the reference data lies there, and :func:`update_grids` moves the grids (refitting the coefficients so
the learned functions are kept) and reports the loss before and after.
"""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import torch

from kamoe_viz.errors import GridUpdateError, ValidationError
from kamoe_viz.interpret._common import forward_numpy, model_loss, reference_set, task_metrics, to_tensor
from kamoe_viz.interpret.splines import grid_bounds, kan_layer_names, kan_layer_ref, layer_inputs, unit_names

if TYPE_CHECKING:
    from kamoe_viz.data.base import Dataset
    from kamoe_viz.nn.moe import KAMoE

OUTSIDE_GRID_WARNING = 0.10  # warn when more than this fraction of an input's data lies outside the spline grid


@torch.no_grad()
def grid_coverage_table(
    model: KAMoE, dataset: Dataset, inputs: dict[str, np.ndarray] | None = None, threshold: float = OUTSIDE_GRID_WARNING
) -> pd.DataFrame:
    """Per layer input: grid range, data range and the fraction of reference data outside the grid
    (where the spline part is 0 and only the base function acts); ``warn`` when above ``threshold``."""
    if inputs is None:
        inputs = layer_inputs(model, dataset)
    frames = []
    for ref in model.kan_layers():
        kan = ref.layer
        data = inputs[ref.name]
        inside = kan.grid_coverage(torch.as_tensor(data, dtype=kan.grid.dtype, device=kan.grid.device))
        lows, highs = grid_bounds(kan)
        in_names, _ = unit_names(model, dataset, ref)
        outside = 1.0 - inside.cpu().numpy().astype(np.float64)
        frames.append(
            pd.DataFrame(
                {
                    "layer": ref.name,
                    "input": np.arange(kan.in_features),
                    "input_name": in_names,
                    "grid_low": lows,
                    "grid_high": highs,
                    "data_low": data.min(axis=0),
                    "data_high": data.max(axis=0),
                    "outside_fraction": outside,
                    "warn": outside > threshold,
                }
            )
        )
    columns = [
        "layer",
        "input",
        "input_name",
        "grid_low",
        "grid_high",
        "data_low",
        "data_high",
        "outside_fraction",
        "warn",
    ]
    return pd.concat(frames, ignore_index=True)[columns] if frames else pd.DataFrame(columns=columns)


def _losses(model: KAMoE, dataset: Dataset, max_rows: int) -> dict[str, float]:
    out = {}
    for split in ("train", "val"):
        X, y, _, _ = reference_set(dataset, split, max_rows)
        pred = forward_numpy(model, X).prediction
        out[f"{split}_loss"] = model_loss(dataset, pred, y)
        for key, value in task_metrics(dataset, pred, y).items():
            out[f"{split}_{key}"] = value
    return out


def update_grids(
    model: KAMoE,
    dataset: Dataset,
    layers: list[str] | None = None,
    inplace: bool = False,
    max_rows: int = 5000,
    eval_rows: int = 5000,
) -> tuple[Any, pd.DataFrame]:
    """Move each KAN layer's grid onto the training data (``KANLinear.update_grid``, which refits the spline
    coefficients so the functions are kept on the data), gate first; returns (model, report).

    The report has one row per metric with its value before and after (loss = the training loss on scaled
    targets; train and validation splits). With ``inplace=False`` a copy is updated and the given model is
    untouched. Raises :class:`GridUpdateError` when the model has no KAN layer or a refit fails.
    """
    names = kan_layer_names(model)
    if not names:
        raise GridUpdateError("this model has no KAN layers (GRKAN gate or KAN experts), so it has no grid")
    chosen = names if layers is None else list(layers)
    for name in chosen:
        if name not in names:
            raise ValidationError("layer", name, f"must be one of {', '.join(names)}")
    target = model if inplace else copy.deepcopy(model)
    before = _losses(target, dataset, eval_rows)
    X, _, _, _ = reference_set(dataset, "train", max_rows, seed=1)
    target.eval()
    for name in names:  # in model order, so later layers see the already-updated earlier ones
        if name not in chosen:
            continue
        with torch.no_grad():
            seen = target.kan_layer_inputs(to_tensor(target, X))[name]
        kan_layer_ref(target, name).layer.update_grid(seen)
    after = _losses(target, dataset, eval_rows)
    report = pd.DataFrame(
        {"metric": list(before), "before": list(before.values()), "after": [after[k] for k in before]}
    )
    report["change"] = report["after"] - report["before"]
    return target, report
