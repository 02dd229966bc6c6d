"""Sweep plumbing without Ray: tasks of one configuration x seeds, the resumable results CSV, engine options."""

from __future__ import annotations

import pandas as pd
import pytest

from kamoe_viz import compare
from kamoe_viz.compare import engines
from kamoe_viz.compare.results_file import ResultsFile
from kamoe_viz.config import DataConfig, ModelConfig, RunConfig, TrainConfig
from kamoe_viz.errors import ValidationError


def tiny(epochs: int = 2) -> RunConfig:
    return RunConfig(
        data=DataConfig(name="regimes", options={"n_samples": 300}),
        model=ModelConfig(expert_hidden=(4,), n_experts=2),
        train=TrainConfig(epochs=epochs, batch_size=64, early_stopping=0, device="cpu"),
    ).validate()


def test_tasks_group_the_seeds_of_one_configuration():
    specs = compare.plan(tiny(), ("linear", "grn"), seeds=5, include_standard=True)
    tasks = engines.split_tasks(specs, 2)
    assert [len(t) for t in tasks] == [2, 2, 1] * 3
    for task in tasks:
        assert len({s.variant for s in task}) == 1 and len({s.seed for s in task}) == len(task)
    assert sorted(s.index for t in tasks for s in t) == list(range(15))
    split = compare.plan(tiny(), ("grn",), seeds=3, include_standard=False, vary_split=True)
    assert [len(t) for t in engines.split_tasks(split, 5)] == [1, 1, 1]  # each seed has its own data


def test_results_csv_resumes_and_reruns_error_rows(tmp_path):
    out = tmp_path / "runs.csv"
    first = compare.run(tiny(), gates=("grn",), seeds=1, results_path=str(out))
    assert len(pd.read_csv(out)) == 2 and first.extra["resumed"] == 0
    frame = pd.read_csv(out, dtype={"message": str})
    frame.loc[frame["variant"] == "grn", ["stopped_reason", "message"]] = ["error", "worker died"]
    frame.to_csv(out, index=False)
    second = compare.run(tiny(), gates=("grn",), seeds=2, results_path=str(out))
    assert second.extra["resumed"] == 1  # the standard seed 0; grn seed 0 said error and was trained again
    again = second.table.set_index("run_key")
    assert (again["stopped_reason"] != "error").all() and len(again) == 4
    std0 = first.table[first.table["variant"] == "standard"].iloc[0]
    assert again.loc[std0["run_key"], "test_metric"] == std0["test_metric"]
    grn0 = first.table[first.table["variant"] == "grn"].iloc[0]
    # trained again, now batched with seed 1: equal to the one-by-one run to float tolerance
    assert again.loc[grn0["run_key"], "test_metric"] == pytest.approx(grn0["test_metric"], rel=1e-4)
    assert len(pd.read_csv(out)) == 4


def test_rows_of_other_settings_stay_in_the_file(tmp_path):
    out = tmp_path / "runs.csv"
    compare.run(tiny(epochs=1), gates=("linear",), seeds=1, include_standard=False, results_path=str(out))
    compare.run(tiny(epochs=2), gates=("linear",), seeds=1, include_standard=False, results_path=str(out))
    written = pd.read_csv(out)
    assert sorted(written["epochs_run"]) == [1, 2]


def test_a_file_that_is_not_a_results_csv_is_refused(tmp_path):
    other = tmp_path / "other.csv"
    other.write_text("a,b\n1,2\n")
    with pytest.raises(ValidationError, match="run_key"):
        ResultsFile(other)
    with pytest.raises(ValidationError, match="folder"):
        ResultsFile(tmp_path / "missing" / "x.csv")


@pytest.mark.parametrize("address", ["nohost", ":123", "host:0", "host:99999", "ray://h:10001x", "a/b:1"])
def test_bad_ray_addresses_are_refused(address):
    with pytest.raises(ValidationError, match="HOST:PORT"):
        engines.check_address(address)


def test_engine_names_and_address_checks():
    assert engines.check_address(" 10.0.0.5:6379 ") == "10.0.0.5:6379" and engines.check_address("auto") == "auto"
    assert engines.check_address("") is None
    with pytest.raises(ValidationError, match="local, ray"):
        engines.check_engine("dask")
    with pytest.raises(ValidationError, match="ray only"):
        engines.make_engine("local", address="h:1")


def test_server_address_comes_from_the_environment(monkeypatch):
    monkeypatch.delenv(engines.RAY_ADDRESS_ENV, raising=False)
    assert engines.server_ray_address() is None
    monkeypatch.setenv(engines.RAY_ADDRESS_ENV, "head:6379")
    assert engines.server_ray_address() == "head:6379"
    monkeypatch.setenv(engines.RAY_ADDRESS_ENV, "not an address")
    with pytest.raises(ValidationError):
        engines.server_ray_address()
