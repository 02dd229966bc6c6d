"""Tidy frames of a :class:`~kamoe_viz.training.timeline.Timeline` for the charts: metrics and load over epochs,
and one snapshot's region map, prediction map and gate spline curves. ``Timeline``'s methods of the same names call
these."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from kamoe_viz.labels import gate_kan_edge

SCALAR_METRICS = (
    "nmi",
    "routing_entropy",
    "load_cv",
    "max_violation",
    "gini",
    "min_load",
    "max_load",
    "dropped_fraction",
)  # the per-snapshot numbers of metrics_frame

if TYPE_CHECKING:
    from kamoe_viz.training.timeline import Snapshot, Timeline


def metrics_frame(timeline: Timeline) -> pd.DataFrame:
    """One row per snapshot: epoch, train_loss, val_loss and every scalar routing metric."""
    rows = [
        {
            "epoch": s.epoch,
            "train_loss": s.train_loss,
            "val_loss": s.val_loss,
            **{k: s.metrics.get(k) for k in SCALAR_METRICS},
        }
        for s in timeline.snapshots
    ]
    return pd.DataFrame(rows, columns=["epoch", "train_loss", "val_loss", *SCALAR_METRICS]).astype(float)


def load_frame(timeline: Timeline) -> pd.DataFrame:
    """Long frame epoch, expert, load (top-1 share on the probe set), for a stacked area over epochs."""
    from kamoe_viz.interpret._common import expert_names

    names = expert_names(timeline.n_experts)
    rows = [(s.epoch, names[e], float(v)) for s in timeline.snapshots for e, v in enumerate(s.metrics["load"])]
    return pd.DataFrame(rows, columns=["epoch", "expert", "load"])


def region_frame(timeline: Timeline, snap: Snapshot) -> pd.DataFrame | None:
    """The snapshot's region map as :func:`kamoe_viz.interpret.gates.region_map` returns it (None if not 2-D)."""
    from kamoe_viz.interpret.gates import region_frame

    if snap.region is None or timeline.region_axes is None:
        return None
    return region_frame(snap.region, *timeline.region_axes, *timeline.axis_names)


def prediction_frame(timeline: Timeline, snap: Snapshot) -> pd.DataFrame | None:
    """Grid cells x, y with the predicted class and its probability (classification) or the prediction."""
    if snap.prediction is None or timeline.region_axes is None:
        return None
    gx, gy = np.meshgrid(*timeline.region_axes)
    frame = pd.DataFrame({"x": gx.ravel(), "y": gy.ravel()})
    if timeline.task == "classification":
        names = timeline.class_names or [str(c) for c in range(snap.prediction.shape[1])]
        frame["predicted"] = np.asarray(names, dtype=object)[snap.prediction.argmax(axis=1)]
        frame["probability"] = snap.prediction.max(axis=1)
    else:
        frame["prediction"] = snap.prediction[:, 0]
    x_axis, y_axis = timeline.region_axes
    frame.attrs.update(
        {
            "x_name": timeline.axis_names[0],
            "y_name": timeline.axis_names[1],
            "step_x": float(x_axis[1] - x_axis[0]),
            "step_y": float(y_axis[1] - y_axis[0]),
        }
    )
    return frame


def spline_frame(timeline: Timeline, snap: Snapshot, top: int | None = None) -> pd.DataFrame:
    """Long frame layer, edge, input, output, x, total of the gate's spline curves in the snapshot.

    ``top`` keeps the ``top`` edges whose curve spans the widest range in the last snapshot (the same edges at
    every epoch, so panels stay in place while scrubbing)."""
    keep: set[tuple[str, int, int]] | None = None
    if top is not None and timeline.snapshots:
        spans = [
            (float(np.ptp(values[:, j, i])), layer, j, i)
            for layer, values in timeline.snapshots[-1].splines.items()
            for j in range(values.shape[1])
            for i in range(values.shape[2])
        ]
        keep = {(layer, j, i) for _, layer, j, i in sorted(spans, reverse=True)[:top]}
    frames = []
    for layer, values in snap.splines.items():
        x = timeline.spline_x[layer]
        _, n_out, n_in = values.shape
        for j in range(n_out):
            for i in range(n_in):
                if keep is not None and (layer, j, i) not in keep:
                    continue
                frames.append(
                    pd.DataFrame(
                        {
                            "layer": layer,
                            "edge": gate_kan_edge(layer, i, j),
                            "input": i,
                            "output": j,
                            "x": x[:, i],
                            "total": values[:, j, i],
                        }
                    )
                )
    columns = ["layer", "edge", "input", "output", "x", "total"]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=columns)
