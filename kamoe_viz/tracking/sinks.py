"""The two stores: MLflow (through its client, no global active run) and TensorBoard (torch's SummaryWriter)."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

from kamoe_viz.errors import ValidationError

DEFAULT_MLFLOW_URI = "sqlite:///mlflow.db"  # MLflow's own default: a SQLite file in the working directory
INSTALL_HINT = "needs the tracking extra: pip install 'kamoe-viz[tracking]' (mlflow-skinny, tensorboard)"


def mlflow_uri() -> str:
    return os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_MLFLOW_URI


class MlflowSink:
    """One MLflow run in experiment ``experiment`` (created when missing), optionally nested under a parent run."""

    def __init__(
        self,
        run_name: str,
        experiment: str = "kamoe-viz",
        parent_run_id: str | None = None,
        tracking_uri: str | None = None,
    ) -> None:
        try:
            from mlflow.tracking import MlflowClient
        except ImportError:
            raise ValidationError("--mlflow", True, INSTALL_HINT) from None
        self.uri = tracking_uri or mlflow_uri()
        self.client = MlflowClient(tracking_uri=self.uri)
        found = self.client.get_experiment_by_name(experiment)
        experiment_id = found.experiment_id if found is not None else self.client.create_experiment(experiment)
        tags = {"mlflow.runName": run_name, "mlflow.source.name": "kamoe-viz"}
        if parent_run_id:
            tags["mlflow.parentRunId"] = parent_run_id
        self.run_id: str = self.client.create_run(experiment_id, run_name=run_name, tags=tags).info.run_id
        self.n_experts = 0

    def log_params(self, params: Mapping[str, str]) -> None:
        from mlflow.entities import Param

        items = [Param(k, str(v)[:6000]) for k, v in params.items()]
        for start in range(0, len(items), 100):  # MLflow's batch limit
            self.client.log_batch(self.run_id, params=items[start : start + 100])

    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None:
        import time

        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        items = [Metric(k, float(v), now, int(step)) for k, v in metrics.items()]
        for start in range(0, len(items), 1000):
            self.client.log_batch(self.run_id, metrics=items[start : start + 1000])

    def log_load(self, load: Sequence[float], step: int) -> None:
        """Per-expert load as the series ``routing/load/expert_<e>`` (MLflow has no histogram type); the last
        one is also written as the artifact ``routing_load.json``."""
        from kamoe_viz.tracking.core import LOAD_TAG

        self.log_metrics({f"{LOAD_TAG}/expert_{e}": float(v) for e, v in enumerate(load)}, step)
        self._last_load = (int(step), [float(v) for v in load])

    def close(self, status: str) -> None:
        last = getattr(self, "_last_load", None)
        if last is not None:
            self.client.log_text(
                self.run_id,
                json.dumps({"step": last[0], "expert": list(range(len(last[1]))), "load": last[1]}),
                "routing_load.json",
            )
        self.client.set_terminated(self.run_id, status=status)


class TensorBoardSink:
    """Event files under ``logdir/run_name``: scalars, the settings as text, per-expert load as histograms."""

    def __init__(self, logdir: str, run_name: str) -> None:
        root = Path(logdir)
        if root.exists() and not root.is_dir():
            raise ValidationError("--tensorboard", logdir, "must be a folder (it is created when missing)")
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise ValidationError("--tensorboard", logdir, INSTALL_HINT) from None
        parts = ["".join(c if c.isalnum() or c in "-_.=" else "_" for c in part) for part in run_name.split("/")]
        self.logdir = root.joinpath(*[p for p in parts if p.strip("._")] or ["run"])  # "a/b" -> logdir/a/b
        self.writer = SummaryWriter(log_dir=str(self.logdir))

    def log_params(self, params: Mapping[str, str]) -> None:
        table = "| setting | value |\n| --- | --- |\n" + "\n".join(f"| {k} | {v} |" for k, v in params.items())
        self.writer.add_text("config", table, 0)

    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None:
        for key, value in metrics.items():
            self.writer.add_scalar(key, value, int(step))

    def log_load(self, load: Sequence[float], step: int) -> None:
        """The load as a histogram over expert index: bucket e (edges e - 0.5, e + 0.5) holds expert e's share."""
        from kamoe_viz.tracking.core import LOAD_TAG

        counts = [float(v) for v in load]
        if not counts:
            return
        index = range(len(counts))
        self.writer.add_histogram_raw(
            LOAD_TAG,
            min=0.0,
            max=float(len(counts) - 1),
            num=sum(counts),
            sum=sum(i * c for i, c in zip(index, counts)),
            sum_squares=sum(i * i * c for i, c in zip(index, counts)),
            bucket_limits=[i + 0.5 for i in index],
            bucket_counts=counts,
            global_step=int(step),
        )

    def close(self, status: str) -> None:
        self.writer.add_text("status", status, 0)
        self.writer.close()
