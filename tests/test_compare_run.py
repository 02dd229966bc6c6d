"""compare.run with the real trainer on tiny settings: the table, reproducibility from seeds, processes = in-process,
diverged runs kept, and the command line writing one CSV row per gate and seed."""

from __future__ import annotations

import os

import numpy as np
import pandas as pd
import pytest
from _california import CALIFORNIA_CSV

from kamoe_viz import compare
from kamoe_viz.cli.compare import main
from kamoe_viz.config import DataConfig, ModelConfig, RunConfig, TrainConfig
from kamoe_viz.errors import ValidationError

CALIFORNIA = CALIFORNIA_CSV
TINY_DATA = DataConfig(name="regimes", options={"n_samples": 300})


def tiny(epochs: int = 2, **model) -> RunConfig:
    return RunConfig(
        data=TINY_DATA,
        model=ModelConfig(expert_hidden=(4,), n_experts=2, **model),
        train=TrainConfig(epochs=epochs, batch_size=64, early_stopping=0, device="cpu"),
    ).validate()


@pytest.fixture(scope="module")
def result():
    return compare.run(tiny(), gates=("linear", "grkan"), seeds=2, include_standard=True)


def test_table_has_one_row_per_variant_and_seed(result):
    t = result.table
    assert len(t) == 6 and list(t["variant"].unique()) == ["standard", "linear", "grkan"]
    assert sorted(t["seed"].unique()) == [0, 1] and set(t["data_seed"]) == {0}
    for col in (
        "test_metric",
        "train_seconds",
        "params",
        "epochs_run",
        "best_epoch",
        "stopped_reason",
        "diverged",
        "gate_entropy",
        "regime_nmi",
    ):
        assert col in t.columns
    assert result.metric == "r2" and np.isfinite(t["test_metric"]).all()
    params = t.groupby("variant")["params"].first()
    assert params["standard"] < params["linear"] < params["grkan"]
    moe = t[t["variant"] != "standard"]
    assert moe["gate_entropy"].between(0, 1).all() and moe["regime_nmi"].between(0, 1).all()
    assert t.loc[t["variant"] == "standard", "gate_entropy"].isna().all()
    assert (t["epochs_run"] == 2).all()


def test_histories_samples_and_statistics(result):
    h = result.histories
    assert set(h.groupby(["variant", "seed"]).size()) == {2} and "val_loss" in h.columns
    g = result.gate_samples
    assert set(g["variant"]) == {"linear", "grkan"}
    rows = g.groupby(["variant", "seed"])["row"].nunique()
    assert rows.nunique() == 1  # every gate is shown on the same test rows
    assert len(result.stats) == 3 and set(result.summary["n"]) == {2}
    assert result.verdict and "2" in result.verdict
    csv = pd.read_csv(pd.io.common.StringIO(result.to_csv()))
    assert len(csv) == 6


def test_comparison_is_reproducible_from_its_seeds(result):
    again = compare.run(tiny(), gates=("linear", "grkan"), seeds=2, include_standard=True)
    assert again.table["test_metric"].tolist() == result.table["test_metric"].tolist()


def test_worker_processes_give_the_same_results(result):
    parallel = compare.run(tiny(), gates=("linear", "grkan"), seeds=2, include_standard=True, jobs=2)
    assert parallel.jobs == 2
    np.testing.assert_allclose(parallel.table["test_metric"], result.table["test_metric"], rtol=0, atol=1e-6)
    assert parallel.table["epochs_run"].tolist() == result.table["epochs_run"].tolist()


def test_vary_split_uses_the_seed_for_the_split():
    res = compare.run(tiny(epochs=1), gates=("grn",), seeds=[3, 4], include_standard=False, vary_split=True)
    assert res.table["data_seed"].tolist() == [3, 4]


def test_a_diverged_run_is_reported_not_dropped():
    base = tiny(epochs=3)
    base.train.lr = 10.0  # the trainer's guard stops on the first non-finite loss or exploding gradient
    res = compare.run(base, gates=("grn",), seeds=2, include_standard=False)
    t = res.table
    assert len(t) == 2 and t["diverged"].any()  # every run is kept, diverged or not
    bad = t[t["diverged"]]
    assert (bad["stopped_reason"] == "diverged").all() and bad["message"].str.contains("diverged").all()
    assert np.isfinite(bad["test_metric"]).all()  # scored with the best weights before the divergence
    assert "diverged" in res.verdict


def test_sequential_experts_on_a_table_fail_before_training():
    with pytest.raises(ValidationError, match="sequential"):
        compare.run(tiny(expert="lstm"), gates=("grn",), seeds=2)


def test_cli_compare_writes_one_row_per_gate_and_seed(tmp_path, capsys):
    out = tmp_path / "results.csv"
    code = main(
        [
            "compare",
            "--dataset",
            "regimes",
            "--option",
            "n_samples=300",
            "--gates",
            "linear,grn",
            "--seeds",
            "2",
            "--epochs",
            "2",
            "--hidden",
            "4",
            "--experts",
            "2",
            "--no-standard",
            "--out",
            str(out),
            "--quiet",
        ]
    )
    assert code == 0
    table = pd.read_csv(out)
    assert len(table) == 4 and set(table["variant"]) == {"linear", "grn"}
    printed = capsys.readouterr().out
    assert "Per variant:" in printed and "Paired comparisons" in printed and "Verdict:" in printed


@pytest.mark.skipif(not CALIFORNIA.exists(), reason=f"{CALIFORNIA} is missing")
def test_cli_reproduce_california_tiny(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("KAMOE_CALIFORNIA_CSV", str(CALIFORNIA))
    code = main(
        [
            "reproduce",
            "california",
            "--seeds",
            "2",
            "--layers",
            "1",
            "--widths",
            "3",
            "--experts",
            "mlp",
            "--max-epochs",
            "1",
            "--out-dir",
            str(tmp_path),
            "--quiet",
        ]
    )
    assert code == 0
    md = (tmp_path / "california.md").read_text()
    assert "| MLP | KAMoE (GRKAN gate) |" in md and "0.784" in md and "Command: `python -m kamoe_viz" in md
    runs = pd.read_csv(tmp_path / "california_runs.csv")
    assert len(runs) == 6 and set(runs["width"]) == {3} and (runs["epochs_run"] == 1).all()
    assert os.environ["KAMOE_CALIFORNIA_CSV"] == str(CALIFORNIA)
