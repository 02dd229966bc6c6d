"""Experiment tracking export: write a run's settings, per-epoch losses, routing metrics and per-expert load to
MLflow and/or TensorBoard (optional extras: ``pip install 'kamoe-viz[tracking]'``).

    tracker = Tracker.open(config_params(config), run_name="regimes grkan", mlflow=True, tensorboard="tb")
    trainer = Trainer(model, dataset, config.train, on_epoch=tracker.epoch_logger(dataset, batch_size))
    ...
    tracker.finish(metrics)

Neither mlflow nor tensorboard is imported unless asked for.
"""

from kamoe_viz.tracking.core import LOAD_TAG, Sink, Tracker, config_params, epoch_metrics, finite_metrics, load_metrics
from kamoe_viz.tracking.export import log_comparison

__all__ = [
    "LOAD_TAG",
    "Sink",
    "Tracker",
    "config_params",
    "epoch_metrics",
    "finite_metrics",
    "load_metrics",
    "log_comparison",
]
