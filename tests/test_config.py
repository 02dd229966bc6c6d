"""RunConfig: validation messages, dict/JSON and URL round trips, and random (hostile) settings."""

from __future__ import annotations

import contextlib
import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kamoe_viz.config import DataConfig, ModelConfig, RunConfig, TrainConfig
from kamoe_viz.errors import KamoeError, ValidationError


def test_defaults_are_the_reference_configuration():
    config = RunConfig().validate()
    assert config.model.gate == "grkan" and config.model.gate_activation == "sigmoid"
    assert config.model.n_experts == 3 and config.model.expert_hidden == (100,)
    assert (config.model.kan_grid, config.model.kan_order, config.model.kan_range) == (3, 3, (-1.0, 1.0))
    assert config.train.lr == 1e-3 and config.train.batch_size == 128
    assert (config.train.lr_patience, config.train.lr_factor, config.train.min_lr) == (10, 0.25, 2.5e-5)


def test_dict_and_json_round_trip():
    config = RunConfig(
        data=DataConfig(name="moons", options={"noise": 0.2, "n_samples": 500}, seed=3),
        model=ModelConfig(gate="grn", expert="kan", n_experts=4, expert_hidden=(16, 8), top_k=2),
        train=TrainConfig(epochs=7, lr=0.01, device="cpu"),
    ).validate()
    again = RunConfig.from_dict(json.loads(config.to_json()))
    assert again == config


def test_query_params_round_trip_and_only_non_defaults():
    config = RunConfig(
        data=DataConfig(name="xor", options={"noise": 0.1}),
        model=ModelConfig(gate="linear", gate_activation="softmax", expert_hidden=(32, 32), kan_range=(-2.0, 2.0)),
        train=TrainConfig(epochs=12, seed=5),
    ).validate()
    params = config.to_query_params()
    assert params["model.gate"] == "linear"
    assert params["model.expert_hidden"] == "32,32"
    assert params["data.options.noise"] == "0.1"
    assert "train.lr" not in params  # unchanged defaults stay out of the link
    assert RunConfig.from_query_params(params) == config
    assert RunConfig.from_query_params({}) == RunConfig().validate()


@pytest.mark.parametrize(
    "raw, field, fragment",
    [
        ({"model": {"n_experts": 0}}, "model.n_experts", "integer from 1 to 16"),
        ({"model": {"gate": "moe"}}, "model.gate", "linear, grn, grkan"),
        ({"model": {"top_k": 5, "n_experts": 3}}, "model.top_k", "at most model.n_experts (3)"),
        ({"model": {"kan_range": [1, -1]}}, "model.kan_range", "low < high"),
        ({"model": {"expert_hidden": []}}, "model.expert_hidden", "1 to 6 layer widths"),
        ({"train": {"lr": 0}}, "train.lr", "> 0"),
        ({"train": {"lr": float("nan")}}, "train.lr", "number"),
        ({"train": {"device": "tpu"}}, "train.device", "auto, cpu, cuda, mps"),
        ({"train": {"epochs": 2.5}}, "train.epochs", "integer"),
        ({"train": {"batchsize": 3}}, "train.batchsize", "unknown field"),
        ({"extra": {}}, "config", "unknown section"),
        ({"data": {"test_fraction": 0.9}}, "data.test_fraction", "<= 0.5"),
        ({"train": {"lr": 10**400}}, "train.lr", "number"),
        ({"train": {"epochs": 10**400}}, "train.epochs", "integer"),
    ],
)
def test_validation_messages_name_field_value_and_allowed(raw, field, fragment):
    with pytest.raises(ValidationError) as info:
        RunConfig.from_dict(raw)
    message = str(info.value)
    assert message.startswith(field), message
    assert fragment in message, message


def test_links_never_carry_file_paths():
    config = RunConfig(
        data=DataConfig(name="csv", csv_path="/home/me/data.csv", target="y", options={"csv_path": "/x.csv"})
    ).validate()
    assert not any("csv_path" in key for key in config.to_query_params())


@pytest.mark.parametrize(
    "params, fragment",
    [
        ({"model.n_experts": "many"}, "model.n_experts"),
        ({"model.gate": "nonsense"}, "model.gate"),
        ({"evil.__class__": "x"}, "is not a known setting"),
        ({"model.options": "x"}, "is not a known setting"),
        ({"model.input_scaling": "maybe"}, "true or false"),
        ({"data.csv_path": "/etc/passwd"}, "file paths are not accepted in links"),
        ({"data.options.csv_path": "/etc/passwd"}, "file paths are not accepted in links"),
    ],
)
def test_bad_link_parameters_are_refused_by_name(params, fragment):
    with pytest.raises(ValidationError) as info:
        RunConfig.from_query_params(params)
    assert fragment in str(info.value)


_text = st.text(max_size=12)
_scalar = st.one_of(
    st.integers(-(10**6), 10**6),
    st.integers(min_value=10**300),
    st.floats(allow_nan=True, allow_infinity=True),
    _text,
    st.none(),
    st.booleans(),
    st.lists(st.integers(-5, 2000), max_size=8),
)
_sections = st.fixed_dictionaries(
    {},
    optional={
        "data": st.dictionaries(
            st.sampled_from(["name", "seed", "test_fraction", "val_fraction", "options", "junk"]), _scalar, max_size=4
        ),
        "model": st.dictionaries(
            st.sampled_from(
                [
                    "gate",
                    "n_experts",
                    "top_k",
                    "expert",
                    "expert_hidden",
                    "kan_grid",
                    "kan_order",
                    "kan_range",
                    "dropout",
                    "gate_activation",
                    "kind",
                ]
            ),
            _scalar,
            max_size=5,
        ),
        "train": st.dictionaries(
            st.sampled_from(
                ["epochs", "batch_size", "lr", "device", "seed", "early_stopping", "lr_factor", "max_grad_norm"]
            ),
            _scalar,
            max_size=5,
        ),
    },
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_sections)
def test_random_settings_raise_only_validation_errors(raw):
    try:
        config = RunConfig.from_dict(raw)
    except KamoeError:
        return
    # Whatever was accepted must survive both round trips unchanged.
    assert RunConfig.from_dict(config.to_dict()) == config
    assert RunConfig.from_query_params(config.to_query_params()) == config


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.text(max_size=30), st.text(max_size=30), max_size=6))
def test_random_link_parameters_raise_only_validation_errors(params):
    with contextlib.suppress(KamoeError):
        RunConfig.from_query_params(params)


def test_problems_lists_every_bad_field_at_once():
    raw = RunConfig().to_dict()
    raw["model"].update(top_k=9, expert_hidden=[0], kan_grid=0)
    raw["train"]["epochs"] = -1
    found = RunConfig.problems(raw)
    assert [p.split(":")[0] for p in found] == [
        "model.top_k",
        "model.expert_hidden",
        "model.kan_grid",
        "train.epochs",
    ], found
    assert RunConfig.problems(RunConfig().to_dict()) == []
    assert RunConfig.problems({"nonsense": 1}) == [
        "config: got 'nonsense'; unknown section; allowed: data, model, train."
    ]
