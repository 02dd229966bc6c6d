"""The cost budget: parameter counts by arithmetic equal the built model's, and an oversized setting is refused
before anything is allocated, alike in the library, the CLI and a shared link."""

from __future__ import annotations

import resource
import subprocess
import sys
import time

import pytest
import torch
from _app_support import ROOT, new_app
from hypothesis import given, settings
from hypothesis import strategies as st

from kamoe_viz import budget
from kamoe_viz.config import EXPERT_TYPES, GATE_FAMILIES, ModelConfig, RunConfig
from kamoe_viz.errors import ValidationError
from kamoe_viz.nn import build_model

HUGE = dict(n_experts=16, expert="kan", expert_hidden=(1024,) * 6)


class Dims:
    def __init__(self, n_features: int, n_outputs: int, seq_len: int | None) -> None:
        self.n_features, self.n_outputs, self.seq_len = n_features, n_outputs, seq_len


@settings(max_examples=80, deadline=None, derandomize=True)
@given(
    kind=st.sampled_from(["moe", "standard"]),
    gate=st.sampled_from(GATE_FAMILIES),
    expert=st.sampled_from(EXPERT_TYPES),
    hidden=st.lists(st.integers(1, 9), min_size=1, max_size=3),
    n_experts=st.integers(1, 5),
    gate_hidden=st.integers(0, 6),
    grid=st.integers(1, 6),
    order=st.integers(1, 4),
    shared=st.integers(0, 2),
    routing=st.sampled_from(["dense", "noisy_topk", "switch"]),
    features=st.integers(1, 5),
    outputs=st.integers(1, 3),
    seq=st.none() | st.integers(2, 5),
    scaling=st.booleans(),
)
def test_the_arithmetic_count_is_the_built_models(
    kind, gate, expert, hidden, n_experts, gate_hidden, grid, order, shared, routing, features, outputs, seq, scaling
) -> None:
    if expert in ("lstm", "gru") and seq is None:
        seq = 3
    config = ModelConfig(
        kind=kind,
        gate=gate,
        expert=expert,
        expert_hidden=tuple(hidden),
        n_experts=n_experts,
        gate_hidden=gate_hidden,
        kan_grid=grid,
        kan_order=order,
        shared_experts=shared,
        routing=routing,
        top_k=1 if routing == "noisy_topk" else 0,
        input_scaling=scaling,
    )
    with torch.device("meta"):  # the oracle: the real modules, without allocating their weights
        model = build_model(config, Dims(features, outputs, seq))
    cost = budget.estimate(config, features, outputs, seq)
    assert (cost.params, cost.gate_params) == (model.parameter_count(), model.gate_parameter_count())


def test_an_oversized_model_is_refused_by_name_and_the_limit_can_be_raised() -> None:
    config = ModelConfig(**HUGE, kan_grid=50, kan_order=5).validate()
    with pytest.raises(ValidationError) as info:
        budget.check_model(config, 8, 1, environ={})
    message = str(info.value)
    assert "4.71 billion parameters" in message and "20 million" in message
    for setting in (
        "model.n_experts (16)",
        "model.expert_hidden",
        "model.kan_grid (50)",
        "model.kan_order (5)",
        "KAMOE_MAX_PARAMS",
    ):
        assert setting in message
    raised = {budget.ENV_MAX_PARAMS: "5000000000", budget.ENV_MAX_MEMORY_MB: str(10**6)}
    assert budget.check_model(config, 8, 1, environ=raised).params == 4_705_919_577
    with pytest.raises(ValidationError, match="KAMOE_MAX_MEMORY_MB"):
        budget.check_model(
            ModelConfig(n_experts=16, expert_hidden=(1024,) * 2).validate(), 8, 1, batch_size=65_536, environ={}
        )
    with pytest.raises(ValidationError, match="KAMOE_MAX_PARAMS"):
        budget.limits({budget.ENV_MAX_PARAMS: "lots"})


def test_the_preflight_builds_on_the_meta_device_and_refuses_what_is_over_the_budget() -> None:
    """check_buildable (the Train page's preflight) returns check_training's cost once the model's shapes are built,
    and refuses an oversized setting by name (before building it: HUGE would take 19 GB)."""
    from kamoe_viz.data import load_dataset

    config = RunConfig()
    dataset = load_dataset(config.data)
    cost = budget.check_buildable(config, dataset, environ={})
    assert cost == budget.check_training(config, dataset, environ={}) and cost.params > 0
    huge = RunConfig.from_dict({"model": HUGE})
    with pytest.raises(ValidationError, match="KAMOE_MAX_PARAMS"):
        budget.check_buildable(huge, dataset, environ={})


def _limit_memory() -> None:  # so that a regression fails here instead of exhausting the machine
    resource.setrlimit(resource.RLIMIT_AS, (6 * 1024**3, 6 * 1024**3))


def test_cli_refuses_an_oversized_model_within_seconds() -> None:
    started = time.monotonic()
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "kamoe_viz",
            "train",
            "--experts",
            "16",
            "--expert",
            "kan",
            "--hidden",
            "1024,1024,1024,1024,1024,1024",
            "--quiet",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        preexec_fn=_limit_memory,
    )
    assert proc.returncode == 2, proc.stderr
    assert time.monotonic() - started < 30
    assert "model.n_experts (16)" in proc.stderr and "--max-params" in proc.stderr


def test_a_link_over_the_budget_opens_the_train_page_quickly_with_the_message() -> None:
    link = {
        "model.n_experts": "16",
        "model.expert": "kan",
        "model.expert_hidden": "1024,1024,1024,1024,1024,1024",
        "model.kan_grid": "50",
        "model.kan_order": "5",
    }
    assert RunConfig.from_query_params(link)  # every value is inside its own documented bounds
    started = time.monotonic()
    at = new_app(link, timeout=60)
    assert time.monotonic() - started < 30
    assert not at.exception
    assert any("parameters" in e.value and "(50)" in e.value and "KAMOE_MAX_PARAMS" in e.value for e in at.error), [
        e.value for e in at.error
    ]
