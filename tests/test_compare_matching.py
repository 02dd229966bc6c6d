"""Experts are matched across seeds before "expert k" is pooled: expert numbering is arbitrary per seed."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from kamoe_viz import compare
from kamoe_viz.charts import compare as cc
from kamoe_viz.compare.matching import SEED_EXPERT, align_gate_samples, match_experts
from kamoe_viz.config import DataConfig, ModelConfig, RunConfig, TrainConfig


def test_a_permuted_profile_is_matched_back() -> None:
    rng = np.random.default_rng(0)
    reference = rng.random((4, 30))
    perm = np.array([2, 0, 3, 1])  # other expert j is reference expert perm[j]
    other = reference[perm] + rng.normal(0, 0.01, (4, 30))
    assert match_experts(reference, other).tolist() == perm.tolist()
    assert match_experts(reference, reference).tolist() == [0, 1, 2, 3]


def _samples(weights: dict[int, np.ndarray], regimes: np.ndarray | None = None) -> pd.DataFrame:
    frames = []
    for seed, w in weights.items():
        n, e = w.shape
        f = pd.DataFrame(
            {
                "variant": "grkan",
                "seed": seed,
                "row": np.repeat(np.arange(n), e),
                "expert": np.tile(np.arange(e), n),
                "weight": w.reshape(-1),
            }
        )
        if regimes is not None:
            f["regime"] = np.repeat(regimes, e)
        frames.append(f)
    return pd.concat(frames, ignore_index=True)


def _one_hot(winners: np.ndarray, e: int) -> np.ndarray:
    return np.eye(e)[winners] * 0.9 + 0.1 / e


def test_pooled_histogram_of_permuted_seeds_equals_one_seed_after_matching() -> None:
    """Seed 1 is seed 0 with its experts renumbered: pooled without matching, every expert looks half-used."""
    rng = np.random.default_rng(1)
    w0 = _one_hot(rng.integers(0, 3, 60), 3) * np.array([1.0, 0.5, 0.2])  # experts differ in how they weigh
    w0 = w0 / w0.sum(axis=1, keepdims=True)
    w1 = w0[:, [2, 0, 1]]  # seed 1's expert 0 is seed 0's expert 2, ...
    samples = _samples({0: w0, 1: w1})
    aligned, note = align_gate_samples(samples, shared_rows=True)
    assert "Hungarian" in note and "1 run(s) were renumbered" in note
    s1 = aligned[aligned["seed"] == 1]
    assert dict(zip(s1[SEED_EXPERT], s1["expert"], strict=True)) == {0: 2, 1: 0, 2: 1}
    pooled = cc.gate_histogram_frame(aligned)
    alone = cc.gate_histogram_frame(aligned[aligned["seed"] == 0])
    assert np.allclose(pooled["fraction"], alone["fraction"])  # the same experts pooled: the same histogram
    unmatched = cc.gate_histogram_frame(samples)
    assert not np.allclose(unmatched["fraction"], alone["fraction"])  # what pooling by raw number did


def test_different_splits_match_on_regimes_or_say_they_cannot() -> None:
    rng = np.random.default_rng(2)
    r0, r1 = rng.integers(0, 3, 50), rng.integers(0, 3, 50)  # each seed its own rows
    samples = pd.concat([_samples({0: _one_hot(r0, 3)}, r0), _samples({1: _one_hot(r1, 3)[:, [1, 2, 0]]}, r1)])
    aligned, note = align_gate_samples(samples, shared_rows=False)
    assert "regime" in note
    s1 = aligned[aligned["seed"] == 1]
    assert dict(zip(s1[SEED_EXPERT], s1["expert"], strict=True)) == {0: 1, 1: 2, 2: 0}
    kept, note = align_gate_samples(samples.drop(columns="regime"), shared_rows=False)
    assert "numbered as each seed drew them" in note and kept["expert"].equals(samples["expert"])


@pytest.mark.parametrize("vary_split", [False, True])
def test_compare_run_matches_and_says_so(vary_split: bool) -> None:
    base = RunConfig(
        data=DataConfig(name="regimes", options={"n_samples": 300}),
        model=ModelConfig(expert_hidden=(4,), n_experts=3),
        train=TrainConfig(epochs=2, batch_size=64, early_stopping=0, device="cpu"),
    ).validate()
    res = compare.run(base, gates=("linear",), seeds=2, include_standard=False, vary_split=vary_split)
    g = res.gate_samples
    assert {"regime", SEED_EXPERT} <= set(g.columns)
    assert "Hungarian" in res.expert_matching
    for _, run in g.groupby("seed"):  # a one-to-one renumbering
        assert sorted(run.drop_duplicates(SEED_EXPERT)["expert"]) == [0, 1, 2]
