"""Live training for interactive front ends: a job of stages (the mixture, then its plain baseline) advanced in
short, time-boxed bursts, so a UI can redraw between bursts and stop at any moment.

A front end keeps one :class:`LiveJob` per user session and either calls :meth:`LiveJob.advance` from its refresh
loop, or lets :meth:`LiveJob.start_background` train in a thread while it only polls :meth:`LiveJob.pop_events`
and redraws ("main" finished: show the run, already saved when a store was given; "baseline" finished: show its
scores). A background job that nobody polls for ``idle_timeout`` seconds (its browser tab was closed) stops itself,
keeping what it learned, so abandoned sessions do not hold a core.
Models are built exactly as :func:`kamoe_viz.training.train_run` builds them (seeded by ``train.seed``), so a run
trained here matches the same settings trained from the command line.
"""

from __future__ import annotations

import threading
import time
import traceback
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from kamoe_viz.config import RunConfig
from kamoe_viz.errors import KamoeError

if TYPE_CHECKING:
    from kamoe_viz.data.base import Dataset
    from kamoe_viz.nn.moe import KAMoE
    from kamoe_viz.runstore import RunStore
    from kamoe_viz.training import Trainer
    from kamoe_viz.training.results import EpochInfo, TrainedRun, TrainResult
    from kamoe_viz.training.timeline import Timeline

MAIN, BASELINE = "main", "baseline"

# Background jobs of this process that are still training, so that a front end can offer a job whose page was
# reloaded (its browser session, and with it the reference to the job, is gone) to the new session.
_BACKGROUND: dict[int, LiveJob] = {}
_BACKGROUND_LOCK = threading.Lock()


def background_jobs() -> list[LiveJob]:
    """Jobs training in a background thread of this process right now, oldest first."""
    with _BACKGROUND_LOCK:
        jobs = list(_BACKGROUND.values())
    return [j for j in jobs if j.running]


@dataclass
class Stage:
    kind: str  # MAIN | BASELINE
    config: RunConfig
    model: KAMoE | None  # None once a baseline stage has finished (its scores are kept, its weights are not)
    trainer: Trainer | None  # None once the stage has finished (optimizer state and data copies released)
    epochs: list[EpochInfo] = field(default_factory=list)  # EpochInfo records so far
    timeline: Timeline | None = None  # the main stage's training timeline (kamoe_viz.training.timeline)

    @property
    def total_epochs(self) -> int:
        return int(self.config.train.epochs)

    @property
    def live_trainer(self) -> Trainer:
        """The trainer of a stage that has not finished."""
        if self.trainer is None:
            raise RuntimeError(f"the {self.kind} stage has finished; its trainer was released")
        return self.trainer


def make_stage(kind: str, config: RunConfig, dataset: Dataset) -> Stage:
    """Seed, build the model and its Trainer (raises the library's errors for impossible settings)."""
    import torch

    from kamoe_viz.budget import check_training
    from kamoe_viz.nn import build_model
    from kamoe_viz.training import Trainer
    from kamoe_viz.training.timeline import Timeline

    config = config.validate()
    check_training(config, dataset)  # parameters and memory of a batch, before anything is built
    torch.manual_seed(config.train.seed)
    model = build_model(config.model, dataset)
    trainer = Trainer(model, dataset, config.train)  # with train.restarts, this picks the initialisation first
    # the timeline's epoch-0 snapshot is of the weights training starts from, so it is taken after that choice
    timeline = (
        Timeline.create(model, dataset, config.train.epochs, batch_size=config.train.batch_size)
        if kind == MAIN
        else None
    )
    if timeline is not None:
        trainer.on_epoch = timeline.callback(model)
    return Stage(kind, config, model, trainer, timeline=timeline)


@dataclass
class LiveJob:
    dataset: Dataset
    stages: list[Stage]
    index: int = 0
    run: TrainedRun | None = (
        None  # TrainedRun of the main stage once finished (or the run a baseline-only job belongs to)
    )
    baseline: TrainResult | None = None  # TrainResult of the baseline stage once finished
    error: str | None = None
    details: str | None = None  # traceback of an unexpected failure, for a bug report
    finished: bool = False
    store: RunStore | None = None  # a RunStore: the main run is saved as soon as it finishes
    csv: bytes | None = None  # the uploaded CSV behind the dataset, saved with the run
    notes: list[str] = field(default_factory=list)  # e.g. the run could not be saved
    stopped_idle: bool = False
    idle_timeout: float = 600.0
    _events: list[str] = field(default_factory=list, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _stop_requested: bool = False
    _heartbeat: float = field(default_factory=time.monotonic, repr=False)
    _thread: threading.Thread | None = field(default=None, repr=False)

    @classmethod
    def start(
        cls,
        config: RunConfig,
        dataset: Dataset,
        with_baseline: bool = True,
        store: RunStore | None = None,
        csv: bytes | None = None,
    ) -> LiveJob:
        from kamoe_viz.training import baseline_config

        stages = [make_stage(MAIN, config, dataset)]
        if with_baseline and config.model.kind != "standard":
            stages.append(make_stage(BASELINE, baseline_config(config), dataset))
        return cls(dataset=dataset, stages=stages, store=store, csv=csv)

    @classmethod
    def baseline_for(cls, run: TrainedRun) -> LiveJob:
        """A job that trains only the plain baseline of an existing run."""
        from kamoe_viz.training import baseline_config

        return cls(
            dataset=run.dataset, stages=[make_stage(BASELINE, baseline_config(run.config), run.dataset)], run=run
        )

    @property
    def stage(self) -> Stage | None:
        return self.stages[self.index] if self.index < len(self.stages) else None

    @property
    def active(self) -> bool:
        return not self.finished and self.stage is not None

    @property
    def running(self) -> bool:
        """True while training goes on: stages left, or the background thread has not ended yet."""
        return self.active or (self._thread is not None and self._thread.is_alive())

    def advance(self, budget: float = 0.35) -> list[str]:
        """Train the current stage for about ``budget`` seconds (at least one epoch); the stages that finished."""
        stage = self.stage
        if stage is None or self.finished:
            self.finished = True
            return []
        started = time.perf_counter()
        try:
            trainer = stage.live_trainer
            while not trainer.done:
                stage.epochs.extend(trainer.run_epochs(1))
                if time.perf_counter() - started >= budget:
                    break
            if trainer.done:
                return [self._finish_stage(stage)]
        except KamoeError as err:
            self._fail(str(err))
        except Exception as err:  # never take the front end down; keep the details for a bug report
            self._fail(f"Training failed: {type(err).__name__}: {err}", traceback.format_exc(limit=6))
        return []

    def stop(self) -> list[str]:
        """Stop now, keeping what the current stage learned (best weights); later stages are skipped."""
        stage = self.stage
        if stage is None or self.finished:
            return []
        stage.live_trainer.stop()
        self.stages = self.stages[: self.index + 1]
        try:
            return [self._finish_stage(stage)]
        except Exception as err:
            self._fail(f"Stopping failed: {type(err).__name__}: {err}", traceback.format_exc(limit=6))
            return []

    # ----- background training ------------------------------------------------------------------------------------
    def start_background(self, budget: float = 0.5) -> None:
        """Train in a daemon thread, ``budget`` seconds between checks for a stop request or an idle front end."""
        if self._thread is not None:
            return
        self.touch()
        self._thread = threading.Thread(target=self._loop, args=(budget,), name="kamoe-live-training", daemon=True)
        with _BACKGROUND_LOCK:
            _BACKGROUND[id(self)] = self
        self._thread.start()

    def _loop(self, budget: float) -> None:
        try:
            while self.active:
                if self._stop_requested or time.monotonic() - self._heartbeat > self.idle_timeout:
                    self.stopped_idle = not self._stop_requested
                    self._push(self.stop())
                    break
                self._push(self.advance(budget))
        finally:
            with _BACKGROUND_LOCK:
                _BACKGROUND.pop(id(self), None)

    def describe(self) -> str:
        """One line for a person: data, gate, experts and progress, e.g. ``regimes · GRKAN gate · 3 × MLP ·
        mixture epoch 206/400``."""
        stage = self.stage or self.stages[-1]
        model = stage.config.model if stage.kind == MAIN else self.stages[0].config.model
        what = "mixture" if stage.kind == MAIN else "plain baseline"
        done = stage.epochs[-1].epoch if stage.epochs else 0
        gate = (
            "no gate"
            if model.kind == "standard"
            else f"{model.gate.upper() if model.gate != 'linear' else 'linear'} gate"
        )
        return (
            f"{self.dataset.name} · {gate} · {model.n_experts} × {model.expert.upper()} · {what} epoch "
            f"{done}/{stage.total_epochs}"
        )

    def _push(self, events: list[str]) -> None:
        with self._lock:
            self._events.extend(events)

    def request_stop(self) -> None:
        """Ask the background thread to stop after the epoch it is in (the best weights are kept)."""
        self._stop_requested = True
        if self._thread is None:
            self._push(self.stop())

    def touch(self) -> None:
        """The front end is still watching (resets the idle timer)."""
        self._heartbeat = time.monotonic()

    def pop_events(self) -> list[str]:
        """Stages finished since the last call ("main", "baseline"), oldest first."""
        with self._lock:
            events, self._events = self._events, []
        return events

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the background thread has ended; True when it has."""
        if self._thread is not None:
            self._thread.join(timeout)
            return not self._thread.is_alive()
        return self.finished

    def _finish_stage(self, stage: Stage) -> str:
        from kamoe_viz.training import TrainedRun

        trainer, model = stage.live_trainer, stage.model
        if model is None:
            raise RuntimeError(f"the {stage.kind} stage has finished; its model was released")
        if stage.timeline is not None:  # the last epoch trained, before finish() restores the best weights
            last = stage.epochs[-1] if stage.epochs else None
            stage.timeline.finalize(
                model, trainer.epoch, last.train_loss if last else None, last.val_loss if last else None
            )
        result = trainer.finish()
        if stage.kind == MAIN:
            model.cpu().eval()
            self.run = TrainedRun(
                config=stage.config, dataset=self.dataset, model=model, result=result, timeline=stage.timeline
            )
            if self.store is not None:
                try:
                    self.store.save(self.run, csv=self.csv)
                except (KamoeError, OSError) as err:
                    self.notes.append(
                        f"The run could not be saved to {getattr(self.store, 'root', 'the runs folder')}:"
                        f" {err} It stays open in this session."
                    )
            if result.stopped_reason in ("stopped", "diverged"):
                self.stages = self.stages[: self.index + 1]  # no baseline after a stop or a divergence
        else:
            self.baseline = result
            stage.model = None  # the baseline's scores are kept, its weights are not needed
        stage.trainer = None  # release the trainer (optimizer state, data copies)
        self.index += 1
        self.finished = self.index >= len(self.stages)
        return stage.kind

    def _fail(self, message: str, details: str | None = None) -> None:
        self.error = message
        self.details = details
        self.finished = True
