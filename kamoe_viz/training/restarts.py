"""Restarts (``train.restarts``): try several initialisations briefly and train the most promising one.

A mixture of experts trained on the mixture likelihood can settle in a poor local optimum: experts keep balanced
loads but a regime boundary sits in the wrong place, and no amount of further training moves it. Which
initialisation does so shows early in the validation objective. With ``restarts = R > 1`` the trainer first trains
R initialisations (the model it was given and R - 1 fresh ones) for ``restart_epochs`` epochs each, with the same
settings and batch order, and then trains the run from the initial weights of the one whose validation loss was
lowest; the run is then exactly what training from that initialisation gives. The search costs
R * restart_epochs extra epochs; the choice uses the validation split only (never test).
"""

from __future__ import annotations

import copy
import dataclasses
import time
from typing import TYPE_CHECKING

import torch

from kamoe_viz.config import TrainConfig

if TYPE_CHECKING:
    from kamoe_viz.data.base import Dataset
    from kamoe_viz.nn.moe import KAMoE


def _fresh(model: KAMoE, seed: int, k: int) -> KAMoE:
    """Another initialisation of ``model``'s architecture (same class and config), drawn from its own seed."""
    torch.manual_seed((seed + 1) * 104_729 + k)  # distinct from every run's own seed and from each other
    fresh = type(model)(model.config, model.n_features, model.n_outputs, model.seq_len)
    fresh.normalise_weights = getattr(model, "normalise_weights", False)
    return fresh


def restarts_notice(config: TrainConfig) -> str | None:
    """What a page shows while the restarts' search runs (it happens before the first epoch), or None without it."""
    if config.restarts <= 1:
        return None
    epochs = min(config.restart_epochs, config.epochs)
    return (
        f"Trying {config.restarts} initialisations for {epochs} epochs each (restarts); the one with the "
        "lowest validation loss then trains…"
    )


def choose_initialisation(model: KAMoE, dataset: Dataset, config: TrainConfig) -> tuple[list[float], int, float]:
    """Load into ``model`` the initial weights of the best of ``config.restarts`` candidates (candidate 0 is the
    model as given). Returns (each candidate's best validation loss, the chosen index, seconds spent); with
    restarts = 1 nothing is trained: ([], 0, 0.0)."""
    from kamoe_viz.training.trainer import Trainer

    if config.restarts <= 1:
        return [], 0, 0.0
    started = time.perf_counter()
    brief = dataclasses.replace(config, restarts=1, epochs=min(config.restart_epochs, config.epochs))
    inits, losses = [], []
    with torch.random.fork_rng(devices=[]):  # the run's own random stream is left as it was
        for k in range(config.restarts):
            candidate = copy.deepcopy(model) if k == 0 else _fresh(model, config.seed, k)
            inits.append({name: t.detach().clone() for name, t in candidate.state_dict().items()})
            trainer = Trainer(candidate, dataset, brief)
            while not trainer.done:
                trainer.run_epochs(1)
            losses.append(float(trainer.best_val))
    chosen = min(range(len(losses)), key=lambda k: (losses[k], k))
    model.load_state_dict(inits[chosen])
    return losses, chosen, time.perf_counter() - started


__all__ = ["choose_initialisation", "restarts_notice"]
