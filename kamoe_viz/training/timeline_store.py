"""Reading and writing a :class:`kamoe_viz.training.timeline.Timeline` as two members of a saved run:
``timeline.json`` (schedule, losses, metrics, axes) and ``timeline.safetensors`` (the arrays), the same safe format
as the run itself, no pickle."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from kamoe_viz.errors import RunFileError
from kamoe_viz.training.timeline import MEMBERS, Snapshot, Timeline

FORMAT_VERSION = 1


def to_members(timeline: Timeline) -> dict[str, bytes]:
    """``timeline.json`` and ``timeline.safetensors`` of a saved run."""
    from safetensors.numpy import save

    from kamoe_viz.runstore.fileformat import dump_json

    snaps = timeline.snapshots
    meta = {
        "version": FORMAT_VERSION,
        "planned": timeline.planned,
        "epochs": timeline.epochs,
        "train_loss": [s.train_loss for s in snaps],
        "val_loss": [s.val_loss for s in snaps],
        "metrics": [s.metrics for s in snaps],
        "n_experts": timeline.n_experts,
        "task": timeline.task,
        "activation": timeline.activation,
        "axis_names": list(timeline.axis_names),
        "class_names": timeline.class_names,
        "max_snapshots": timeline.max_snapshots,
        "batch_size": timeline.batch_size,
        "spline_layers": sorted(timeline.spline_x),
    }
    arrays: dict[str, np.ndarray] = {}
    if snaps:
        arrays["weights"] = np.stack([s.weights for s in snaps]).astype(np.float32)
        regions = [s.region for s in snaps if s.region is not None]
        predictions = [s.prediction for s in snaps if s.prediction is not None]
        if len(regions) == len(predictions) == len(snaps):  # 2-D data: every snapshot has its region map
            arrays["region"] = np.stack(regions).astype(np.float32)
            arrays["prediction"] = np.stack(predictions).astype(np.float32)
        for layer in timeline.spline_x:
            if all(layer in s.splines for s in snaps):
                arrays[f"spline.{layer}"] = np.stack([s.splines[layer] for s in snaps]).astype(np.float32)
    if timeline.region_axes is not None:
        arrays["x_axis"], arrays["y_axis"] = (np.asarray(a, dtype=np.float64) for a in timeline.region_axes)
    for layer, x in timeline.spline_x.items():
        arrays[f"spline_x.{layer}"] = np.asarray(x, dtype=np.float32)
    if timeline.probe_regimes is not None:
        arrays["probe_regimes"] = np.asarray(timeline.probe_regimes, dtype=np.int64)
    return {"timeline.json": dump_json(meta), "timeline.safetensors": save(arrays)}


def from_members(members: Mapping[str, bytes], where: str = "run") -> Timeline | None:
    """The timeline of a saved run; None when the run has none (saved before timelines existed)."""
    if not all(m in members for m in MEMBERS):
        return None
    from safetensors.numpy import load

    from kamoe_viz.runstore.fileformat import load_json

    meta = load_json("timeline.json", members["timeline.json"], where)
    try:
        arrays = load(members["timeline.safetensors"])
    except Exception as exc:  # safetensors raises its own error type for malformed headers
        raise RunFileError(f"{where}: timeline.safetensors cannot be read ({exc}).") from None
    try:
        return _decode(meta, arrays)
    except (KeyError, TypeError, ValueError, IndexError) as exc:
        raise RunFileError(f"{where}: timeline.json and timeline.safetensors do not fit together ({exc}).") from None


def _decode(meta: Any, arrays: dict[str, np.ndarray]) -> Timeline:
    if not isinstance(meta, dict) or meta.get("version") != FORMAT_VERSION:
        raise ValueError(f"unknown timeline version {meta.get('version') if isinstance(meta, dict) else meta!r}")
    epochs = [int(e) for e in meta["epochs"]]
    n = len(epochs)
    if n > int(meta["max_snapshots"]) or len(meta["metrics"]) != n or len(meta["train_loss"]) != n:
        raise ValueError("snapshot count differs between fields")
    spline_layers = [str(s) for s in meta["spline_layers"]]
    axes = (arrays["x_axis"], arrays["y_axis"]) if "x_axis" in arrays else None
    x_name, y_name = (str(a) for a in meta["axis_names"])
    timeline = Timeline(
        planned=[int(e) for e in meta["planned"]],
        n_experts=int(meta["n_experts"]),
        task=str(meta["task"]),
        activation=str(meta["activation"]),
        probe_regimes=arrays.get("probe_regimes"),
        region_axes=axes,
        axis_names=(x_name, y_name),
        spline_x={layer: arrays[f"spline_x.{layer}"] for layer in spline_layers},
        class_names=meta.get("class_names"),
        max_snapshots=int(meta["max_snapshots"]),
        batch_size=meta.get("batch_size"),
    )
    weights = arrays["weights"] if n else np.zeros((0, 0, timeline.n_experts), np.float32)
    for name in ("weights", "region", "prediction", *(f"spline.{s}" for s in spline_layers)):
        if name in arrays and len(arrays[name]) != n:
            raise ValueError(f"{name} holds {len(arrays[name])} snapshots, timeline.json lists {n}")
    if n and weights.shape[-1] != timeline.n_experts:
        raise ValueError(f"weights have {weights.shape[-1]} experts, timeline.json says {timeline.n_experts}")
    for k in range(n):
        metrics = {key: (float("nan") if value is None else value) for key, value in meta["metrics"][k].items()}
        timeline.snapshots.append(
            Snapshot(
                epoch=epochs[k],
                train_loss=_number(meta["train_loss"][k]),
                val_loss=_number(meta["val_loss"][k]),
                weights=weights[k],
                metrics=metrics,
                region=arrays["region"][k] if "region" in arrays else None,
                prediction=arrays["prediction"][k] if "prediction" in arrays else None,
                splines={s: arrays[f"spline.{s}"][k] for s in spline_layers if f"spline.{s}" in arrays},
            )
        )
    return timeline


def _number(value: Any) -> float | None:
    return None if value is None else float(value) if math.isfinite(float(value)) else None


__all__ = ["FORMAT_VERSION", "from_members", "to_members"]
