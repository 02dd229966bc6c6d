"""Every preset's caption is backed by claims (kamoe_viz.presets), and each claim is checked here by training the
preset over seeds 0-9: a caption on the Train page never says more than this test measured."""

from __future__ import annotations

import json
import os

import pytest
import torch

from kamoe_viz.cli import main
from kamoe_viz.errors import ValidationError
from kamoe_viz.presets import CLAIM_SEEDS, PRESET_LIST, PRESETS, Claim, check_claims, preset_config

CLAIMED = [p.name for p in PRESET_LIST if p.claims]


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.mark.parametrize("name", CLAIMED)
def test_the_preset_claims_hold_over_seeds_0_to_9(name):
    # two seeds at a time for the long presets (those with restarts); starting workers costs more than the rest
    long = PRESETS[name].config().train.restarts > 1
    results = check_claims(PRESETS[name], CLAIM_SEEDS, jobs=min(2, os.cpu_count() or 1) if long else 1)
    failed = [f"{claim.describe()}: measured {value:.3f}" for claim, value, holds in results if not holds]
    assert not failed, failed


def test_every_regimes_preset_but_the_paper_setting_states_a_claim():
    unclaimed = {p.name for p in PRESET_LIST if not p.claims}
    assert unclaimed <= {"california", "series"}, unclaimed  # the paper's setting; the series shows no regimes


def test_claims_compare_as_written():
    claim = Claim("nmi", "mean", ">=", 0.5)
    assert claim.holds([0.4, 0.7]) and not claim.holds([0.4, 0.5]) and not claim.holds([])
    assert Claim("min_load", "min", "<=", 0.1).holds([0.3, 0.05])
    assert "seeds 0-9" in claim.describe() and ">= 0.5" in claim.describe()
    with pytest.raises(ValidationError, match="claim.statistic"):
        Claim("nmi", "median", ">=", 0.5)


def test_an_unknown_preset_is_refused_with_the_list():
    with pytest.raises(ValidationError, match="regimes"):
        preset_config("nope")


def test_the_seed_sets_the_training_seed_only():
    config = preset_config("regimes", seed=7)
    assert config.train.seed == 7 and config.data.seed == 0
    assert config.train.objective == "likelihood"


def test_cli_presets_lists_every_preset_with_its_claims(capsys):
    assert main(["presets", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [p["name"] for p in listed] == [p.name for p in PRESET_LIST]
    regimes = next(p for p in listed if p["name"] == "regimes")
    assert any("NMI" in c for c in regimes["claims"])
    assert main(["presets"]) == 0
    assert "claim:" in capsys.readouterr().out


def test_cli_train_preset_uses_the_preset_and_flags_still_win(capsys):
    assert main(["train", "--preset", "mse", "--epochs", "2", "--seed", "3", "--json", "--quiet"]) == 0
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert report["params"] == 1541  # three experts of 32 units behind a GRKAN gate: the preset's model
    assert report["epochs"] == 2 and report["seed"] == 3  # from the flags
    assert report["gate"] == "grkan" and "nmi" in report


def test_cli_unknown_preset_exits_2(capsys):
    assert main(["train", "--preset", "nope", "--epochs", "1"]) == 2
    assert "preset" in capsys.readouterr().err


def test_claims_measured_in_worker_processes_equal_those_measured_here():
    preset = PRESETS["moons"]
    assert check_claims(preset, (0, 1), jobs=2) == check_claims(preset, (0, 1), jobs=1)


def test_a_preset_run_at_its_epoch_cap_says_its_claims_hold_for_that_budget():
    from kamoe_viz.config import RunConfig
    from kamoe_viz.presets import claims_budget_note, preset_of, run_epoch_cap_notice
    from kamoe_viz.training.results import TrainResult

    collapse = preset_config("collapse", seed=7)
    assert preset_of(collapse) is PRESETS["collapse"] and preset_of(RunConfig()) is None
    capped = TrainResult(epochs_run=collapse.train.epochs, stopped_reason="completed")
    notice = run_epoch_cap_notice(capped, collapse)
    assert notice is not None and "epoch cap (60 epochs)" in notice and "Collapse preset's claims" in notice
    longer = RunConfig.from_dict({**collapse.to_dict(), "train": {**collapse.to_dict()["train"], "epochs": 200}})
    assert preset_of(longer) is None and claims_budget_note(longer) is None  # changed settings: no longer the preset
    assert "claims" not in (run_epoch_cap_notice(TrainResult(epochs_run=200), longer) or "")
    assert run_epoch_cap_notice(TrainResult(epochs_run=12, stopped_reason="early_stopping"), collapse) is None
    assert claims_budget_note(preset_config("series")) is None  # no claims, nothing to protect


def test_a_preset_is_recognised_with_its_dataset_options_written_out():
    """The Train page writes every dataset option out (at its default); that is still the preset."""
    from kamoe_viz.config import RunConfig
    from kamoe_viz.data.registry import dataset_info
    from kamoe_viz.presets import preset_of

    raw = preset_config("regimes").to_dict()
    raw["data"]["options"] = {key: spec.default for key, spec in dataset_info("regimes").options.items()}
    assert raw["data"]["options"] and preset_of(RunConfig.from_dict(raw)) is PRESETS["regimes"]
    raw["data"]["options"]["noise"] = 0.3
    assert preset_of(RunConfig.from_dict(raw)) is None  # a changed option is another setting
