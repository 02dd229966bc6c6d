"""train.restarts: R initialisations tried for a few epochs each; the run trains from the one with the lowest
validation loss, and is then exactly the run that initialisation gives."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest
import torch

from kamoe_viz.cli import main
from kamoe_viz.config import DataConfig, ModelConfig, RunConfig, TrainConfig
from kamoe_viz.data import load_dataset
from kamoe_viz.errors import ValidationError
from kamoe_viz.nn import build_model
from kamoe_viz.training import Trainer
from kamoe_viz.training.batched import unsupported_reason
from kamoe_viz.training.restarts import _fresh


@pytest.fixture(scope="module")
def data():
    return load_dataset(DataConfig(name="regimes", options={"n_samples": 600}))


def _train(model, data, config):
    trainer = Trainer(model, data, config)
    while not trainer.done:
        trainer.run_epochs(1)
    return trainer


def test_the_run_trains_from_the_candidate_with_the_lowest_validation_loss(data):
    config = TrainConfig(epochs=3, restarts=3, restart_epochs=2, objective="likelihood", seed=4)
    torch.manual_seed(4)
    model = build_model(ModelConfig(n_experts=3, expert_hidden=(6,), gate="linear"), data)
    given = copy.deepcopy(model)
    trainer = _train(model, data, config)
    losses, chosen = trainer.restart_losses, trainer.restart_chosen
    assert len(losses) == 3 and chosen == min(range(3), key=losses.__getitem__)
    start = given if chosen == 0 else _fresh(given, config.seed, chosen)
    start_copy = copy.deepcopy(start)
    plain = _train(start, data, TrainConfig(epochs=3, objective="likelihood", seed=4))
    assert trainer.history()["val_loss"].tolist() == plain.history()["val_loss"].tolist()
    # each candidate's loss is what that initialisation reaches in restart_epochs epochs
    brief = _train(start_copy, data, TrainConfig(epochs=2, objective="likelihood", seed=4))
    assert losses[chosen] == pytest.approx(brief.best_val)


def test_one_restart_trains_nothing_extra_and_candidates_differ(data):
    torch.manual_seed(0)
    model = build_model(ModelConfig(n_experts=3, expert_hidden=(6,)), data)
    trainer = Trainer(model, data, TrainConfig(epochs=1))
    assert trainer.restart_losses == [] and trainer.restart_chosen == 0
    other = _fresh(model, 0, 1)
    assert not torch.equal(other.head.weight, model.head.weight)


@pytest.mark.parametrize("field,value", [("restarts", 0), ("restarts", 11), ("restart_epochs", 0)])
def test_restart_settings_are_bounded(field, value):
    with pytest.raises(ValidationError, match=field):
        TrainConfig(**{field: value}).validate()


def test_restarts_train_one_seed_at_a_time_and_round_trip_in_links():
    config = RunConfig.from_dict({"train": {"restarts": 3, "restart_epochs": 5}})
    assert "restarts" in unsupported_reason(config)
    assert RunConfig.from_dict(config.to_dict()).train.restarts == 3


def test_cli_restarts_flags(capsys):
    assert (
        main(
            [
                "train",
                "--option",
                "n_samples=600",
                "--epochs",
                "2",
                "--restarts",
                "2",
                "--restart-epochs",
                "1",
                "--json",
                "--quiet",
            ]
        )
        == 0
    )
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert report["epochs"] == 2
    assert main(["train", "--epochs", "1", "--restarts", "0"]) == 2
    assert "--restarts" in capsys.readouterr().err


def test_a_live_run_s_timeline_starts_from_the_chosen_initialisation(data):
    """The epoch-0 snapshot shows the weights training starts from, i.e. after the restarts picked them."""
    from kamoe_viz.training.live import MAIN, make_stage
    from kamoe_viz.training.timeline import Timeline

    config = RunConfig.from_dict(
        {
            "data": {"name": "regimes", "options": {"n_samples": 600}},
            "model": {"n_experts": 3, "expert_hidden": [6], "gate": "linear"},
            "train": {"epochs": 3, "restarts": 4, "restart_epochs": 2, "objective": "likelihood", "seed": 1},
        }
    )
    stage = make_stage(MAIN, config, data)
    assert stage.trainer.restart_chosen != 0  # a fresh candidate won, so the weights changed after the build
    fresh = Timeline.create(stage.model, data, 3)
    assert np.array_equal(stage.timeline.at(0).weights, fresh.at(0).weights)
    assert stage.trainer.on_epoch is not None  # the timeline still records each epoch


def test_pages_say_what_the_restarts_search_is_doing():
    from kamoe_viz.training.restarts import restarts_notice

    assert restarts_notice(TrainConfig()) is None
    notice = restarts_notice(TrainConfig(restarts=8, restart_epochs=40, epochs=150))
    assert "8 initialisations" in notice and "40 epochs" in notice
