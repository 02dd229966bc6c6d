"""The training timeline: snapshots of how the gate routes, taken at chosen epochs while a model trains.

A snapshot holds the gate weights on a fixed probe set (validation rows, or the first windows of the validation
split for sequences, so they stay in time order), the routing metrics of :mod:`kamoe_viz.routing_metrics` on them
(load, NMI against known regimes, routing entropy...), for 2-D tabular data the region map (gate weights and the
model's prediction on a grid over the plane), and the GRKAN gate's spline curves on a fixed x grid.

Which epochs: every epoch for runs of at most :data:`MAX_SNAPSHOTS` epochs, log-spaced for longer ones (dense early,
where routing forms), or every N epochs when asked; never more than :data:`MAX_SNAPSHOTS`, so memory is bounded
(about 75 kB per snapshot on a 2-D dataset with three experts). Epoch 0 is the untrained model.

A timeline is stored in a saved run as ``timeline.json`` (schedule, losses, metrics, axes) and
``timeline.safetensors`` (the arrays): the same safe format as the run itself, no pickle.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import torch

from kamoe_viz import routing_metrics as rm
from kamoe_viz.errors import ValidationError
from kamoe_viz.training import timeline_frames
from kamoe_viz.training.timeline_frames import SCALAR_METRICS

if TYPE_CHECKING:
    from collections.abc import Callable

    from kamoe_viz.data.base import Dataset
    from kamoe_viz.nn.moe import KAMoE, KanLayerRef
    from kamoe_viz.training.results import EpochInfo

MAX_SNAPSHOTS = 200  # per run; stated in the UI
PROBE_ROWS = 512  # validation rows whose gate weights every snapshot keeps
REGION_RESOLUTION = 60  # cells per axis of a snapshot's region map
SPLINE_POINTS = 40  # x values per GRKAN gate spline curve
SETTLE_AGREEMENT = 0.95  # routing has settled once every later snapshot's winners agree this much with the last
MEMBERS = ("timeline.json", "timeline.safetensors")
SETTLE_DEFINITION = (
    f"Settle epoch: the first snapshot from which every later snapshot routes at least "
    f"{SETTLE_AGREEMENT:.0%} of the probe rows to the same expert as the last one."
)


def snapshot_schedule(total_epochs: int, every: int | None = None, max_snapshots: int = MAX_SNAPSHOTS) -> list[int]:
    """Epochs to snapshot (0 = before training): every epoch when they fit, else log-spaced; ``every`` N epochs when
    given (thinned evenly if that exceeds ``max_snapshots``). Always includes 0 and ``total_epochs``."""
    total = int(total_epochs)
    if total < 1:
        raise ValidationError("epochs", total_epochs, "must be at least 1")
    if not 2 <= int(max_snapshots) <= 10_000:
        raise ValidationError("max_snapshots", max_snapshots, "must be from 2 to 10000")
    if every is not None:
        if not 1 <= int(every) <= total:
            raise ValidationError("snapshot_every", every, f"must be from 1 to the number of epochs ({total})")
        epochs = sorted(set(range(0, total + 1, int(every))) | {total})
    elif total + 1 <= max_snapshots:
        epochs = list(range(total + 1))
    else:  # log-spaced: routing forms early, so early epochs are denser
        n = max_snapshots - 1
        while True:
            epochs = sorted({0, total} | {round(v) for v in np.geomspace(1, total, n)})
            if len(epochs) >= max_snapshots or n > 4 * max_snapshots:
                break
            n += max_snapshots - len(epochs)
    if len(epochs) > max_snapshots:
        keep = np.unique(np.round(np.linspace(0, len(epochs) - 1, max_snapshots)).astype(int))
        epochs = [epochs[i] for i in keep]
    return epochs


def snapshot_metrics(weights: np.ndarray, regimes: np.ndarray | None) -> dict[str, Any]:
    """The routing metrics a snapshot keeps: those of ``routing_summary`` that the timeline charts (ARI and
    mutual information are left out: each costs a millisecond, and the story charts show NMI)."""
    load = rm.expert_load(weights)
    return {
        "load": [float(v) for v in load],
        "mean_weight": [float(v) for v in rm.mean_weight(weights)],
        "load_cv": rm.load_cv(load),
        "max_violation": rm.max_violation(load),
        "gini": rm.gini(load),
        "min_load": float(load.min()),
        "max_load": float(load.max()),
        "routing_entropy": rm.routing_entropy(weights),
        "dropped_fraction": rm.dropped_fraction(weights),
        "nmi": rm.regime_nmi(weights, regimes),
    }


@dataclass
class Snapshot:
    """How the model routed after ``epoch`` epochs."""

    epoch: int
    train_loss: float | None  # None for epoch 0 (and when not known)
    val_loss: float | None
    weights: np.ndarray  # gate weights on the probe set, (rows, E) or (rows, T, E)
    metrics: dict[str, Any]  # routing_summary of ``weights`` against the probe's regimes
    region: np.ndarray | None = None  # gate weights on the region grid (cells, E), 2-D data only
    prediction: np.ndarray | None = None  # (cells, C) class probabilities, or (cells, 1) prediction in target units
    splines: dict[str, np.ndarray] = field(default_factory=dict)  # gate KAN layer -> phi totals (points, out, in)


def _gate_kan_layers(model: KAMoE) -> list[KanLayerRef]:
    refs = model.kan_layers() if hasattr(model, "kan_layers") else []
    return [r for r in refs if r.expert is None and r.name.startswith("gate.")]


class Timeline:
    """Snapshots of one training run. Build with :meth:`create` (takes the epoch-0 snapshot), then call
    :meth:`record` after each epoch (or use :meth:`callback` as a Trainer ``on_epoch``)."""

    def __init__(
        self,
        *,
        planned: list[int],
        n_experts: int,
        task: str,
        activation: str,
        probe_regimes: Any,
        region_axes: tuple[np.ndarray, np.ndarray] | None = None,
        axis_names: tuple[str, str] = ("x", "y"),
        spline_x: dict[str, np.ndarray] | None = None,
        class_names: list[str] | None = None,
        max_snapshots: int = MAX_SNAPSHOTS,
        batch_size: int | None = None,
    ) -> None:
        self.planned = list(planned)
        self.n_experts = int(n_experts)
        self.task = task
        self.activation = activation
        self.probe_regimes = None if probe_regimes is None else np.asarray(probe_regimes)
        self.region_axes = region_axes
        self.axis_names = axis_names
        self.spline_x = dict(spline_x or {})
        self.class_names = class_names
        self.max_snapshots = int(max_snapshots)
        self.batch_size = batch_size
        self.snapshots: list[Snapshot] = []
        self._planned_set = set(self.planned)
        # only while training: model inputs of the probe and the region grid, the dataset (to unscale targets)
        self._probe_X: np.ndarray | None = None
        self._cells: np.ndarray | None = None
        self._dataset: Dataset | None = None
        self._input_cache: torch.Tensor | None = None

    # ----- building -------------------------------------------------------------------------------------------------
    @classmethod
    def create(
        cls,
        model: KAMoE,
        dataset: Dataset,
        total_epochs: int,
        every: int | None = None,
        max_snapshots: int = MAX_SNAPSHOTS,
        batch_size: int | None = None,
        region_resolution: int = REGION_RESOLUTION,
    ) -> Timeline:
        """A timeline for training ``model`` on ``dataset`` for ``total_epochs``, with the epoch-0 snapshot taken."""
        from kamoe_viz.interpret._common import feature_names, reference_indices
        from kamoe_viz.interpret.gates import region_grid

        planned = snapshot_schedule(total_epochs, every, max_snapshots)
        X, _, regimes = dataset.split("val") if len(dataset.X_val) else dataset.split("train")
        idx = np.arange(min(len(X), PROBE_ROWS)) if dataset.is_sequence else reference_indices(len(X), PROBE_ROWS)
        axes, names, cells = None, ("x", "y"), None
        if dataset.is_2d:
            cells, x_axis, y_axis = region_grid(dataset, (0, 1), region_resolution)
            axes = (x_axis, y_axis)
            feats = feature_names(dataset)
            names = (feats[0], feats[1])
        spline_x = {}
        for ref in _gate_kan_layers(model):
            knots = ref.layer.knots().detach().cpu().numpy()
            lo, hi = knots[:, ref.layer.spline_order], knots[:, -ref.layer.spline_order - 1]
            pad = 0.05 * (hi - lo)
            spline_x[ref.name] = np.linspace(lo - pad, hi + pad, SPLINE_POINTS).astype(np.float32)  # (P, in)
        activation = "sigmoid" if getattr(model, "gate", None) is None else model.config.gate_activation
        timeline = cls(
            planned=planned,
            n_experts=model.n_experts,
            task=dataset.task,
            activation=activation,
            probe_regimes=None if regimes is None else np.asarray(regimes)[idx],
            region_axes=axes,
            axis_names=names,
            spline_x=spline_x,
            class_names=list(dataset.class_names or []) or None,
            max_snapshots=max_snapshots,
            batch_size=batch_size,
        )
        timeline._probe_X = np.ascontiguousarray(X[idx])
        timeline._cells = cells
        timeline._dataset = dataset
        timeline.record(model, 0, force=True)
        return timeline

    def wants(self, epoch: int) -> bool:
        """Whether ``epoch`` is on the schedule (and not recorded yet)."""
        return epoch in self._planned_set and not any(s.epoch == epoch for s in self.snapshots[-1:])

    def _inputs(self, model: KAMoE) -> torch.Tensor:
        """The probe rows followed by the region grid's cells as one model input, kept while device and dtype stay."""
        from kamoe_viz.interpret._common import to_tensor

        param = next(model.parameters())
        if self._probe_X is None:
            raise RuntimeError("the timeline keeps its probe rows only while training")
        cached = self._input_cache
        if cached is None or cached.device != param.device or cached.dtype != param.dtype:
            rows = self._probe_X if self._cells is None else np.concatenate([self._probe_X, self._cells])
            cached = self._input_cache = to_tensor(model, rows)
        return cached

    @torch.no_grad()
    def capture(
        self, model: KAMoE, epoch: int, train_loss: float | None = None, val_loss: float | None = None
    ) -> Snapshot:
        """A snapshot of ``model`` now, without keeping it (the live view draws these). One forward pass over the
        probe and the grid together, unless the router's weights depend on the other rows of the batch."""
        from kamoe_viz.interpret._common import flatten_time, rows_of
        from kamoe_viz.routing_specs import ROUTERS

        if self._probe_X is None or self._dataset is None:
            raise ValidationError("timeline", "loaded", "cannot take new snapshots: it was read from a saved run")
        was_training = model.training
        model.eval()
        try:
            inputs, n_probe = self._inputs(model), len(self._probe_X)
            region = prediction = None
            if self._cells is None:
                weights = model.gate_weights(inputs).float().cpu().numpy()
            else:
                spec = ROUTERS.get(getattr(getattr(model, "config", None), "routing", "dense"))
                apart = spec is not None and spec.batch_dependent
                out = model(inputs[n_probe:] if apart else inputs)
                gate = out.gate_weights.float().cpu().numpy()
                weights = model.gate_weights(inputs[:n_probe]).float().cpu().numpy() if apart else gate[:n_probe]
                region = gate if apart else gate[n_probe:]
                pred = out.prediction.float() if apart else out.prediction[n_probe:].float()
                if self.task == "classification":
                    prediction = torch.softmax(pred, dim=-1).cpu().numpy()
                else:
                    prediction = (
                        self._dataset.unscale_y(pred.cpu().numpy().astype(np.float64))
                        .reshape(len(self._cells), -1)[:, -1:]
                        .astype(np.float32)
                    )
            splines = {}
            for ref in _gate_kan_layers(model):
                x = self.spline_x.get(ref.name)
                if x is not None:
                    curves = ref.layer.edge_functions(torch.as_tensor(x, device=ref.layer.base_weight.device))
                    splines[ref.name] = (curves.base + curves.spline).float().cpu().numpy()
        finally:
            model.train(was_training)
        flat = flatten_time(weights, 1)
        metrics = snapshot_metrics(flat, rows_of(self.probe_regimes, len(flat)))
        return Snapshot(
            epoch=int(epoch),
            train_loss=train_loss,
            val_loss=val_loss,
            weights=weights,
            metrics=metrics,
            region=region,
            prediction=prediction,
            splines=splines,
        )

    def record(
        self,
        model: KAMoE,
        epoch: int,
        train_loss: float | None = None,
        val_loss: float | None = None,
        force: bool = False,
    ) -> Snapshot | None:
        """Take and keep a snapshot if ``epoch`` is scheduled (or ``force``, while there is room); else None."""
        if self.snapshots and self.snapshots[-1].epoch == epoch:
            return None
        if not (force or epoch in self._planned_set) or (force and self.full and epoch not in self._planned_set):
            return None
        snap = self.capture(model, epoch, train_loss, val_loss)
        self.snapshots.append(snap)
        return snap

    @property
    def full(self) -> bool:
        return len(self.snapshots) >= self.max_snapshots

    def callback(self, model: KAMoE) -> Callable[[EpochInfo], None]:
        """An ``on_epoch`` for :class:`kamoe_viz.training.Trainer` that records scheduled epochs (never stops)."""

        def on_epoch(info: EpochInfo) -> None:
            self.record(model, info.epoch, info.train_loss, info.val_loss)

        return on_epoch

    def finalize(
        self, model: KAMoE, epoch: int, train_loss: float | None = None, val_loss: float | None = None
    ) -> None:
        """Record the last epoch trained (early stopping may end a run off the schedule); drop the training data."""
        if self._probe_X is not None and (not self.snapshots or self.snapshots[-1].epoch < epoch):
            if self.full:
                self.snapshots.pop()
            self.record(model, epoch, train_loss, val_loss, force=True)
        self.release()

    def release(self) -> None:
        """Forget the probe inputs, grid and dataset (a finished or loaded timeline only reads its snapshots)."""
        self._probe_X = self._cells = self._dataset = self._input_cache = None

    # ----- reading ----------------------------------------------------------------------------------------------------
    @property
    def epochs(self) -> list[int]:
        return [s.epoch for s in self.snapshots]

    def at(self, epoch: int) -> Snapshot:
        """The last snapshot taken at or before ``epoch`` (the first one for earlier epochs)."""
        if not self.snapshots:
            raise ValidationError("timeline", "empty", "has no snapshots")
        best = self.snapshots[0]
        for snap in self.snapshots:
            if snap.epoch <= epoch:
                best = snap
        return best

    def metrics_frame(self) -> pd.DataFrame:
        """One row per snapshot: epoch, losses and every scalar routing metric."""
        return timeline_frames.metrics_frame(self)

    def load_frame(self) -> pd.DataFrame:
        """Long frame epoch, expert, load (top-1 share on the probe set)."""
        return timeline_frames.load_frame(self)

    def settle_epoch(self) -> int | None:
        """See :data:`SETTLE_DEFINITION`; None with fewer than two snapshots."""
        if len(self.snapshots) < 2:
            return None
        final = rm.winners(self.snapshots[-1].weights)
        settled = self.snapshots[-1].epoch
        for snap in reversed(self.snapshots):
            if float(np.mean(rm.winners(snap.weights) == final)) < SETTLE_AGREEMENT:
                break
            settled = snap.epoch
        return settled

    def region_frame(self, snap: Snapshot) -> pd.DataFrame | None:
        """The snapshot's region map (None if not 2-D)."""
        return timeline_frames.region_frame(self, snap)

    def prediction_frame(self, snap: Snapshot) -> pd.DataFrame | None:
        """Grid cells x, y with the prediction (None if not 2-D)."""
        return timeline_frames.prediction_frame(self, snap)

    def spline_frame(self, snap: Snapshot, top: int | None = None) -> pd.DataFrame:
        """The gate's spline curves in the snapshot (``top``: widest edges of the last one)."""
        return timeline_frames.spline_frame(self, snap, top)

    # ----- storage (kamoe_viz.training.timeline_store) -----------------------------------------------------------
    def to_members(self) -> dict[str, bytes]:
        """``timeline.json`` and ``timeline.safetensors`` of a saved run."""
        from kamoe_viz.training.timeline_store import to_members

        return to_members(self)

    @classmethod
    def from_members(cls, members: Mapping[str, bytes], where: str = "run") -> Timeline | None:
        """The timeline of a saved run; None when the run has none (saved before timelines existed)."""
        from kamoe_viz.training.timeline_store import from_members

        return from_members(members, where)


__all__ = [
    "MAX_SNAPSHOTS",
    "MEMBERS",
    "PROBE_ROWS",
    "REGION_RESOLUTION",
    "SCALAR_METRICS",
    "SETTLE_DEFINITION",
    "Snapshot",
    "Timeline",
    "snapshot_metrics",
    "snapshot_schedule",
]
