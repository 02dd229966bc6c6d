"""Comparison planning and bad input: clear messages before anything trains (no training in this file)."""

from __future__ import annotations

import numpy as np
import pytest

from kamoe_viz import compare
from kamoe_viz.cli.compare import main
from kamoe_viz.compare.worker import gate_entropy, regime_agreement
from kamoe_viz.config import ModelConfig, RunConfig, TrainConfig
from kamoe_viz.errors import ValidationError


def _base() -> RunConfig:
    return RunConfig(model=ModelConfig(expert_hidden=(4,)), train=TrainConfig(epochs=2, seed=10)).validate()


def test_plan_is_seed_major_and_keeps_the_split_fixed():
    specs = compare.plan(_base(), "grn,grkan", 2)
    assert [(s.variant, s.seed) for s in specs] == [
        ("standard", 10),
        ("grn", 10),
        ("grkan", 10),
        ("standard", 11),
        ("grn", 11),
        ("grkan", 11),
    ]
    assert {s.config.data.seed for s in specs} == {0}
    assert [s.config.model.kind for s in specs[:2]] == ["standard", "moe"]
    assert specs[2].config.model.gate == "grkan" and specs[2].config.train.seed == 10
    varied = compare.plan(_base(), ["linear"], [3, 5], include_standard=False, vary_split=True)
    assert [(s.seed, s.config.data.seed) for s in varied] == [(3, 3), (5, 5)]


@pytest.mark.parametrize("gates, message", [("linear,moe", "gates: got 'moe'"), ([], "choose at least one")])
def test_bad_gates(gates, message):
    with pytest.raises(ValidationError, match=message):
        compare.plan(_base(), gates, 2, include_standard=False)


@pytest.mark.parametrize(
    "seeds, message", [(0, "count from 1"), ([1, 1], "only once"), ([-1], "integer from 0"), (True, "count from 1")]
)
def test_bad_seeds(seeds, message):
    with pytest.raises(ValidationError, match=message):
        compare.plan(_base(), "grn", seeds)


def test_bad_jobs_and_incompatible_expert_fail_before_training():
    with pytest.raises(ValidationError, match="jobs"):
        compare.run(_base(), "grn", 2, jobs=0)


def test_gate_entropy_and_regime_agreement():
    one_hot = np.eye(3)[[0, 1, 2, 0]]
    assert gate_entropy(one_hot) == pytest.approx(0.0)
    assert gate_entropy(np.full((5, 3), 0.4)) == pytest.approx(1.0)  # sigmoid weights: normalised per row
    regimes = np.array([0, 1, 2, 0])
    assert regime_agreement(one_hot, regimes) == pytest.approx(1.0)
    assert np.isnan(regime_agreement(one_hot, None))
    assert np.isnan(gate_entropy(np.ones((4, 1))))


@pytest.mark.parametrize(
    "argv, needle",
    [
        (["compare", "--gates", "linear,fancy"], "gates: got 'fancy'"),
        (["compare", "--seeds", "two"], "--seeds: got 'two'"),
        (["compare", "--csv", "/no/such.csv", "--target", "y"], "--csv: got '/no/such.csv'"),
        (["compare", "--csv", __file__], "--target"),
        (["compare", "--epochs", "0"], "--epochs (train.epochs): got 0"),
        (["compare", "--jobs", "0", "--epochs", "1"], "jobs: got 0"),
        (["reproduce", "california", "--widths", "0"], "widths: got 0"),
        (["reproduce", "california", "--experts", "lstm"], "experts: got 'lstm'"),
    ],
)
def test_cli_bad_input_exits_2_with_one_line(argv, needle, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert needle in err and "\n" not in err and "Traceback" not in err


def test_a_comparison_config_keeps_the_training_recipe_only_when_asked():
    from kamoe_viz.compare.form import comparison_config, recipe_changes
    from kamoe_viz.presets import preset_config

    base = preset_config("regimes")
    assert recipe_changes(base.train)["objective"] == "likelihood"
    assert recipe_changes(RunConfig().train) == {}
    form = dict(dataset="regimes", n_experts=3, expert="mlp", hidden="8", epochs=5, lr=3e-3, patience=0)
    kept = comparison_config(base, recipe=True, **form)
    plain = comparison_config(base, recipe=False, **form)
    assert kept.train.objective == "likelihood" and kept.train.restarts == 8 and kept.train.epochs == 5
    assert plain.train.objective == "mse" and plain.train.restarts == 1 and plain.train.gate_lr_scale == 1.0
    assert kept.model.gate_activation == base.model.gate_activation and kept.model.expert_hidden == (8,)
    with pytest.raises(ValidationError, match="expert layer widths"):
        comparison_config(base, recipe=False, **{**form, "hidden": "eight"})
