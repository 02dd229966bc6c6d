"""Every KAN edge phi_ij of a model: curves, knots, grid ranges, data distribution, importance (grid coverage
and grid updates are in :mod:`kamoe_viz.interpret.grids`).

The reference set is a fixed subsample of the training split (same rows on every call), pushed through the model
to get the input each KAN layer actually sees (``model.kan_layer_inputs``). Edge importance is
**mean |phi_ij(x_i)| over that reference set** (the edge's average contribution to output j, in the units of the
layer's output), as in pykan's edge scores.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import torch

from kamoe_viz.errors import ValidationError
from kamoe_viz.interpret._common import (
    DEFAULT_REFERENCE_ROWS,
    feature_names,
    reference_set,
    to_tensor,
)
from kamoe_viz.labels import gate_kan_units

if TYPE_CHECKING:
    from kamoe_viz.data.base import Dataset
    from kamoe_viz.nn.moe import KAMoE

IMPORTANCE_DEFINITION = (
    "Edge importance = mean |φ(x)| over the training data (the reference set): how much the "
    "edge adds to its output on average, in the units of the layer's output."
)


def kan_layer_names(model: KAMoE) -> list[str]:
    return [ref.name for ref in model.kan_layers()]


def kan_layer_ref(model: KAMoE, layer: str):
    for ref in model.kan_layers():
        if ref.name == layer:
            return ref
    names = kan_layer_names(model)
    raise ValidationError("layer", layer, f"must be one of the model's KAN layers: {', '.join(names) or 'none'}")


def layer_inputs(
    model: KAMoE, dataset: Dataset, split: str = "train", max_rows: int | None = DEFAULT_REFERENCE_ROWS, seed: int = 0
) -> dict[str, np.ndarray]:
    """What each KAN layer sees on the reference set: {layer name: (N, in) array}."""
    X, _, _, _ = reference_set(dataset, split, max_rows, seed)
    was_training = model.training
    model.eval()
    try:
        parts: dict[str, list[np.ndarray]] = {}
        for start in range(0, len(X), 2048):
            for name, value in model.kan_layer_inputs(to_tensor(model, X[start : start + 2048])).items():
                parts.setdefault(name, []).append(value.cpu().numpy())
    finally:
        model.train(was_training)
    return {name: np.concatenate(chunks) for name, chunks in parts.items()}


def unit_names(model: KAMoE, dataset: Dataset, ref) -> tuple[list[str], list[str]]:
    """Readable names of a layer's inputs and outputs."""
    layer = ref.layer
    if ref.name in ("gate.kan1", "gate.kan2"):
        return gate_kan_units(ref.name, layer.in_features, layer.out_features)
    if ref.expert is None:  # fused first expert layer: inputs are the (scaled) features
        feats = feature_names(dataset)
        if layer.in_features == len(feats):
            inputs = list(feats)
        else:  # windows flattened: time-major (t, feature)
            steps = layer.in_features // max(len(feats), 1)
            inputs = [f"{feats[i % len(feats)]}[t-{steps - 1 - i // len(feats)}]" for i in range(layer.in_features)]
        group, letter = max(ref.group_size, 1), _letter(ref)
        outputs = [f"{letter}{j // group}·n{j % group}" for j in range(layer.out_features)]
        return inputs, outputs
    prefix = f"{_letter(ref)}{ref.expert}"
    return (
        [f"{prefix}·n{i}" for i in range(layer.in_features)],
        [f"{prefix}·{ref.name.split('.')[-1]}·n{j}" for j in range(layer.out_features)],
    )


def _letter(ref) -> str:
    """How an expert of this layer is written in edge names: e0, e1... (routed) or s0, s1... (shared)."""
    return "s" if ref.shared else "e"


def _part(ref) -> str:
    return "gate" if ref.name.startswith("gate.") else ("shared experts" if ref.shared else "experts")


def _edge_expert(ref, output: np.ndarray) -> np.ndarray:
    """The routed expert each edge belongs to (-1 for gate layers and shared experts, which no gate weighs)."""
    if ref.name.startswith("gate.") or ref.shared:
        return np.full(len(output), -1)
    if ref.expert is None:
        return output // max(ref.group_size, 1)
    return np.full(len(output), ref.expert)


def kan_layer_table(model: KAMoE, dataset: Dataset) -> pd.DataFrame:
    """One row per KAN layer: where it sits, its shape and spline settings."""
    rows = []
    for ref in model.kan_layers():
        layer = ref.layer
        part = _part(ref)
        expert = -1 if ref.expert is None or ref.shared else ref.expert
        rows.append(
            {
                "layer": ref.name,
                "part": part,
                "expert": expert,
                "inputs": layer.in_features,
                "outputs": layer.out_features,
                "edges": layer.in_features * layer.out_features,
                "grid_size": layer.grid_size,
                "spline_order": layer.spline_order,
                "base": layer.base_activation_name,
                "input_kind": "gate hidden units h = ReLU(Dense(x))"
                if ref.name == "gate.kan1"
                else (
                    "input features (standardised × input scale)"
                    if ref.expert is None and part != "gate"
                    else "outputs of the previous KAN layer"
                ),
            }
        )
    return pd.DataFrame(
        rows,
        columns=[
            "layer",
            "part",
            "expert",
            "inputs",
            "outputs",
            "edges",
            "grid_size",
            "spline_order",
            "base",
            "input_kind",
        ],
    )


@torch.no_grad()
def edge_importance(
    model: KAMoE,
    dataset: Dataset,
    inputs: dict[str, np.ndarray] | None = None,
    max_rows: int | None = DEFAULT_REFERENCE_ROWS,
    chunk: int = 256,
) -> pd.DataFrame:
    """Mean |phi_ij|, mean |base part| and mean |spline part| of every edge of every KAN layer, over the
    reference set; ``relative`` is importance / the layer's largest importance (1 = the layer's top edge)."""
    if inputs is None:
        inputs = layer_inputs(model, dataset, max_rows=max_rows)
    frames = []
    for ref in model.kan_layers():
        layer = ref.layer
        x = torch.as_tensor(inputs[ref.name], dtype=layer.base_weight.dtype, device=layer.base_weight.device)
        totals = torch.zeros(layer.out_features, layer.in_features, dtype=torch.float64)
        bases, splines = totals.clone(), totals.clone()
        for start in range(0, len(x), chunk):
            curves = layer.edge_functions(x[start : start + chunk])
            totals += curves.total.abs().sum(0).double().cpu()
            bases += curves.base.abs().sum(0).double().cpu()
            splines += curves.spline.abs().sum(0).double().cpu()
        n = max(len(x), 1)
        out_idx, in_idx = np.meshgrid(np.arange(layer.out_features), np.arange(layer.in_features), indexing="ij")
        in_names, out_names = unit_names(model, dataset, ref)
        frame = pd.DataFrame(
            {
                "layer": ref.name,
                "input": in_idx.ravel(),
                "output": out_idx.ravel(),
                "input_name": np.asarray(in_names, dtype=object)[in_idx.ravel()],
                "output_name": np.asarray(out_names, dtype=object)[out_idx.ravel()],
                "expert": _edge_expert(ref, out_idx.ravel()),
                "importance": (totals / n).numpy().ravel(),
                "base_importance": (bases / n).numpy().ravel(),
                "spline_importance": (splines / n).numpy().ravel(),
            }
        )
        frame["edge"] = frame["input_name"] + " → " + frame["output_name"]
        top = frame["importance"].max()
        frame["relative"] = frame["importance"] / top if top > 0 else 0.0
        frame["rank"] = frame["importance"].rank(ascending=False, method="first").astype(int)
        frames.append(frame)
    columns = [
        "layer",
        "edge",
        "input",
        "output",
        "input_name",
        "output_name",
        "expert",
        "importance",
        "base_importance",
        "spline_importance",
        "relative",
        "rank",
    ]
    if not frames:
        return pd.DataFrame(columns=columns)
    return pd.concat(frames, ignore_index=True)[columns].sort_values(["layer", "rank"], ignore_index=True)


def input_importance(importance: pd.DataFrame) -> pd.DataFrame:
    """Edge importance summed over outputs, per layer input (for the first expert layer: per feature)."""
    if importance.empty:
        return pd.DataFrame(columns=["layer", "input", "input_name", "importance", "share"])
    grouped = importance.groupby(["layer", "input", "input_name"], as_index=False)["importance"].sum()
    grouped["share"] = grouped["importance"] / grouped.groupby("layer")["importance"].transform("sum")
    return grouped.sort_values(["layer", "importance"], ascending=[True, False], ignore_index=True)


def _span(values: np.ndarray, grid_low: float, grid_high: float, pad: float = 0.05) -> tuple[float, float]:
    """Plot range of an input: its data range padded by 5%; the grid range when the data are constant."""
    if len(values) == 0:
        return grid_low, grid_high
    low, high = float(np.min(values)), float(np.max(values))
    width = high - low
    if width < 1e-9:
        half = max((grid_high - grid_low) / 2, 0.5)
        return low - half, high + half
    return low - pad * width, high + pad * width


def grid_bounds(layer) -> tuple[np.ndarray, np.ndarray]:
    knots = layer.knots().cpu().numpy()
    return knots[:, layer.spline_order], knots[:, -layer.spline_order - 1]


@torch.no_grad()
def edge_curves(
    model: KAMoE,
    dataset: Dataset,
    layer: str,
    edges: list[tuple[int, int]] | None = None,
    inputs: dict[str, np.ndarray] | None = None,
    n_points: int = 80,
) -> pd.DataFrame:
    """phi_ij on ``n_points`` equally spaced x over each input's data range (padded 5%), split into base and
    spline parts (total = base + spline). ``edges`` as (input, output) pairs; all edges of the layer when None."""
    ref = kan_layer_ref(model, layer)
    kan = ref.layer
    if inputs is None:
        inputs = layer_inputs(model, dataset)
    data = inputs[layer]
    if edges is None:
        edges = [(i, j) for j in range(kan.out_features) for i in range(kan.in_features)]
    edges = [(int(i), int(j)) for i, j in edges]
    for i, j in edges:
        if not (0 <= i < kan.in_features and 0 <= j < kan.out_features):
            raise ValidationError("edge", (i, j), f"must be (input < {kan.in_features}, output < {kan.out_features})")
    lows, highs = grid_bounds(kan)
    used_inputs = sorted({i for i, _ in edges})
    grid = np.zeros((n_points, kan.in_features))
    for i in used_inputs:
        lo, hi = _span(data[:, i], lows[i], highs[i])
        grid[:, i] = np.linspace(lo, hi, n_points)
    curves = kan.edge_functions(torch.as_tensor(grid, dtype=kan.base_weight.dtype, device=kan.base_weight.device))
    base, spline = curves.base.cpu().numpy(), curves.spline.cpu().numpy()
    in_names, out_names = unit_names(model, dataset, ref)
    frames = []
    for i, j in edges:
        frames.append(
            pd.DataFrame(
                {
                    "layer": layer,
                    "edge": f"{in_names[i]} → {out_names[j]}",
                    "input": i,
                    "output": j,
                    "x": grid[:, i],
                    "base": base[:, j, i],
                    "spline": spline[:, j, i],
                }
            )
        )
    columns = ["layer", "edge", "input", "output", "x", "base", "spline", "total"]
    if not frames:
        return pd.DataFrame(columns=columns)
    frame = pd.concat(frames, ignore_index=True)
    frame["total"] = frame["base"] + frame["spline"]
    return frame[columns]


def knot_table(model: KAMoE, layer: str, input_indices: list[int] | None = None) -> pd.DataFrame:
    """Knot positions per input; ``active`` marks the knots bounding the grid range (the others are the
    order-many extra knots on each side that B-splines need)."""
    kan = kan_layer_ref(model, layer).layer
    knots = kan.knots().cpu().numpy()
    k = kan.spline_order
    chosen = range(kan.in_features) if input_indices is None else input_indices
    rows = [
        {
            "layer": layer,
            "input": i,
            "knot": m,
            "position": float(knots[i, m]),
            "active": bool(k <= m <= knots.shape[1] - k - 1),
        }
        for i in chosen
        for m in range(knots.shape[1])
    ]
    return pd.DataFrame(rows, columns=["layer", "input", "knot", "position", "active"])


def input_histograms(
    model: KAMoE,
    dataset: Dataset,
    layer: str,
    input_indices: list[int] | None = None,
    inputs: dict[str, np.ndarray] | None = None,
    bins: int = 30,
) -> pd.DataFrame:
    """Histogram of each input's reference data over the same range as :func:`edge_curves` draws."""
    kan = kan_layer_ref(model, layer).layer
    if inputs is None:
        inputs = layer_inputs(model, dataset)
    data = inputs[layer]
    lows, highs = grid_bounds(kan)
    rows = []
    chosen = range(kan.in_features) if input_indices is None else input_indices
    for i in chosen:
        lo, hi = _span(data[:, i], lows[i], highs[i])
        counts, edges_ = np.histogram(data[:, i], bins=bins, range=(lo, hi))
        total = max(counts.sum(), 1)
        for c, a, b in zip(counts, edges_[:-1], edges_[1:]):
            rows.append(
                {
                    "layer": layer,
                    "input": i,
                    "bin_start": float(a),
                    "bin_end": float(b),
                    "count": int(c),
                    "fraction": c / total,
                }
            )
    return pd.DataFrame(rows, columns=["layer", "input", "bin_start", "bin_end", "count", "fraction"])
