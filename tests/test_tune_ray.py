"""compare --tune: a grid over learning rate and expert width on a real private Ray Tune cluster (127.0.0.1,
2 CPUs) with ASHA and reused actors; each trial trains its seeds batched and reports every epoch."""

from __future__ import annotations

import math

import pytest

pytest.importorskip("ray")

from kamoe_viz.compare.tuning import apply_setting, parse_values, tune_search
from kamoe_viz.config import DataConfig, ModelConfig, RunConfig, TrainConfig
from kamoe_viz.errors import ValidationError


def tiny(epochs: int = 4) -> RunConfig:
    return RunConfig(
        data=DataConfig(name="regimes", options={"n_samples": 300}),
        model=ModelConfig(expert_hidden=(4,), n_experts=2, gate="linear"),
        train=TrainConfig(epochs=epochs, batch_size=64, early_stopping=0, device="cpu"),
    ).validate()


def test_tune_grid_with_asha_reports_every_trial_and_the_best(monkeypatch):
    monkeypatch.setenv("RAY_USAGE_STATS_ENABLED", "0")
    # lr 0.5 makes a far worse first epoch than 1e-2: ASHA (grace 1) may stop it; every trial gets a row
    res = tune_search(tiny(), {"lr": [1e-2, 0.5], "width": [(4,), (8,)]}, seeds=2, cpus=2, grace_period=1)
    t = res.table
    assert len(t) == 4 and set(t["width"]) == {"4", "8"} and set(t["lr"]) == {1e-2, 0.5}
    assert set(t["stopped"]) <= {"completed", "asha"}
    assert (t["seeds"] == 2).all() and (t["epochs"] >= 1).all()
    done = t[t["stopped"] == "completed"]
    assert len(done) >= 1 and done["test_metric"].map(math.isfinite).all() and (done["epochs"] == 4).all()
    assert t["val_loss"].is_monotonic_increasing  # best first
    assert res.best == {"lr": t.iloc[0]["lr"], "width": t.iloc[0]["width"]}
    assert res.metric_label == "r2"
    import ray

    assert not ray.is_initialized()  # the private cluster is shut down with the search


def test_tune_values_are_validated_before_a_cluster_starts():
    assert parse_values("width", "16,32x32") == [(16,), (32, 32)]
    assert parse_values("lr", "1e-3,0.01") == [1e-3, 0.01]
    with pytest.raises(ValidationError, match="learning rates"):
        parse_values("lr", "2")
    with pytest.raises(ValidationError, match="tune axis"):
        parse_values("depth", "2")
    assert apply_setting(tiny(), {"width": (8, 8), "grid": 5}).model.expert_hidden in ([8, 8], (8, 8))
    with pytest.raises(ValidationError):
        tune_search(tiny(), {"gate": ["nope"]}, seeds=1)
