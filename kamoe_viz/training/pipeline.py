"""From settings to a trained run: load the data, seed, build the model, fit; and the plain baseline's settings."""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING

import torch

from kamoe_viz.budget import check_training
from kamoe_viz.config import RunConfig
from kamoe_viz.training.devices import resolve_device
from kamoe_viz.training.results import TrainedRun
from kamoe_viz.training.trainer import EpochCallback, fit

if TYPE_CHECKING:
    from kamoe_viz.data.base import Dataset


def baseline_config(config: RunConfig) -> RunConfig:
    """The same run as a plain network: one expert, no gate, same data, expert layers and training settings."""
    plain = copy.deepcopy(config)
    plain.model.kind = "standard"
    plain.model.top_k = 0
    plain.model.routing = "dense"
    plain.model.shared_experts = 0
    return plain.validate()


def train_run(config: RunConfig, dataset: Dataset | None = None, on_epoch: EpochCallback | None = None) -> TrainedRun:
    """Validate ``config``, load its dataset (unless given), build the model from ``train.seed`` and train it.

    The same config and seed give the same history and metrics on the CPU: the seed is set before the model's
    weights are drawn, and batch order comes from a generator seeded the same way. A diverged run comes back with
    ``result.stopped_reason == 'diverged'`` and the best weights so far. The model is returned on the CPU in eval
    mode.
    """
    from kamoe_viz.nn import build_model

    config = copy.deepcopy(config).validate()
    resolve_device(config.train.device)  # an absent device fails before any data is loaded
    if dataset is None:
        from kamoe_viz.data import load_dataset

        dataset = load_dataset(config.data)
    check_training(config, dataset)  # parameters and memory of a batch, before anything is built
    torch.manual_seed(config.train.seed)
    model = build_model(config.model, dataset)
    result = fit(model, dataset, config.train, on_epoch=on_epoch)
    model.cpu().eval()
    return TrainedRun(config=config, dataset=dataset, model=model, result=result)
