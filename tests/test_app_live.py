"""kamoe_viz.training.live: the app's training jobs (bursts, background thread, stop, idle stop, saving, baseline)."""

from __future__ import annotations

import time

import numpy as np
import pytest

from kamoe_viz.config import RunConfig
from kamoe_viz.data import load_dataset
from kamoe_viz.errors import ValidationError
from kamoe_viz.runstore import RunStore
from kamoe_viz.training import train_run
from kamoe_viz.training.live import BASELINE, MAIN, LiveJob

TINY = {
    "model.expert_hidden": "8",
    "model.n_experts": "2",
    "train.epochs": "5",
    "train.early_stopping": "0",
    "train.batch_size": "256",
    "data.options.n_samples": "600",
}


@pytest.fixture(scope="module")
def setup():
    config = RunConfig.from_query_params(TINY)
    return config, load_dataset(config.data)


def _run_to_end(job: LiveJob) -> list[str]:
    events = []
    while job.active:
        events += job.advance(0.05)
    return events


def test_bursts_train_the_mixture_then_its_baseline(setup):
    config, dataset = setup
    job = LiveJob.start(config, dataset, with_baseline=True)
    assert [s.kind for s in job.stages] == [MAIN, BASELINE]
    events = _run_to_end(job)
    assert events == [MAIN, BASELINE]
    assert job.finished and job.error is None
    assert job.run.result.epochs_run == 5 and job.run.result.stopped_reason == "completed"
    assert job.run.model.n_experts == 2 and not job.run.model.training  # eval mode
    assert job.baseline.epochs_run == 5 and "r2" in job.baseline.metrics
    assert len(job.stages[0].epochs) == 5 and job.stages[0].epochs[-1].gate_weights.shape[1] == 2


def test_same_settings_give_the_same_run_as_train_run(setup):
    config, dataset = setup
    job = LiveJob.start(config, dataset, with_baseline=False)
    _run_to_end(job)
    reference = train_run(config, dataset=dataset)
    np.testing.assert_allclose(job.run.result.history["val_loss"], reference.result.history["val_loss"], rtol=1e-5)
    assert job.run.result.metrics["r2"] == pytest.approx(reference.result.metrics["r2"], rel=1e-5)


def test_background_stop_keeps_the_model_and_skips_the_baseline(setup):
    _, dataset = setup
    long = RunConfig.from_query_params(dict(TINY, **{"train.epochs": "5000"}))
    job = LiveJob.start(long, dataset, with_baseline=True)
    job.start_background(0.05)
    deadline = time.monotonic() + 60
    while len(job.stages[0].epochs) < 2:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    job.request_stop()
    assert job.wait(60)
    assert job.pop_events() == [MAIN]
    assert job.run.result.stopped_reason == "stopped" and 2 <= job.run.result.epochs_run < 5000
    assert len(job.stages) == 1 and job.baseline is None and not job.running


def test_a_job_nobody_watches_stops_itself(setup):
    _, dataset = setup
    long = RunConfig.from_query_params(dict(TINY, **{"train.epochs": "5000"}))
    job = LiveJob.start(long, dataset, with_baseline=False)
    job.idle_timeout = 0.5
    job.start_background(0.05)
    assert job.wait(60)
    assert job.stopped_idle and job.run is not None and job.run.result.stopped_reason == "stopped"


def test_finished_run_is_saved_and_a_failing_store_only_adds_a_note(setup, tmp_path):
    config, dataset = setup
    store = RunStore(tmp_path / "runs")
    job = LiveJob.start(config, dataset, with_baseline=False, store=store)
    _run_to_end(job)
    assert job.run.run_id and store.load(job.run.run_id).config.model.n_experts == 2

    class FullDisk:
        root = "/full"

        def save(self, run, csv=None):
            raise OSError(28, "No space left on device")

    job = LiveJob.start(config, dataset, with_baseline=False, store=FullDisk())
    assert _run_to_end(job) == [MAIN]
    assert job.run is not None and job.error is None
    assert job.notes and "could not be saved" in job.notes[0] and "No space left" in job.notes[0]


def test_impossible_settings_raise_the_library_error(setup):
    _, dataset = setup
    bad = RunConfig.from_query_params(dict(TINY, **{"model.expert": "lstm"}))
    with pytest.raises(ValidationError, match="model.expert"):
        LiveJob.start(bad, dataset)


def test_baseline_for_an_existing_run(setup):
    config, dataset = setup
    run = train_run(config, dataset=dataset)
    job = LiveJob.baseline_for(run)
    assert _run_to_end(job) == [BASELINE]
    assert job.run is run and job.baseline.epochs_run == 5
