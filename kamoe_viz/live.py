"""Live training for interactive front ends: a job of stages (the mixture, then its plain baseline) advanced in
short, time-boxed bursts, so a UI can redraw between bursts and stop at any moment.

A front end keeps one :class:`LiveJob` per user session, calls :meth:`LiveJob.advance` from its refresh loop and
reacts to the returned events ("main" finished: save and show the run; "baseline" finished: show its scores).
Models are built exactly as :func:`kamoe_viz.training.train_run` builds them (seeded by ``train.seed``), so a run
trained here matches the same settings trained from the command line.
"""
from __future__ import annotations

import time
import traceback
from dataclasses import dataclass, field
from typing import Any

from kamoe_viz.config import RunConfig
from kamoe_viz.errors import KamoeError

MAIN, BASELINE = "main", "baseline"


@dataclass
class Stage:
    kind: str  # MAIN | BASELINE
    config: RunConfig
    model: Any
    trainer: Any
    epochs: list = field(default_factory=list)  # EpochInfo records so far

    @property
    def total_epochs(self) -> int:
        return int(self.config.train.epochs)


def make_stage(kind: str, config: RunConfig, dataset: Any) -> Stage:
    """Seed, build the model and its Trainer (raises the library's errors for impossible settings)."""
    import torch

    from kamoe_viz.nn import build_model
    from kamoe_viz.training import Trainer

    config = config.validate()
    torch.manual_seed(config.train.seed)
    model = build_model(config.model, dataset)
    return Stage(kind, config, model, Trainer(model, dataset, config.train))


@dataclass
class LiveJob:
    dataset: Any
    stages: list[Stage]
    index: int = 0
    run: Any = None  # TrainedRun of the main stage once finished (or the run a baseline-only job belongs to)
    baseline: Any = None  # TrainResult of the baseline stage once finished
    error: str | None = None
    details: str | None = None  # traceback of an unexpected failure, for a bug report
    finished: bool = False

    @classmethod
    def start(cls, config: RunConfig, dataset: Any, with_baseline: bool = True) -> "LiveJob":
        from kamoe_viz.training import baseline_config

        stages = [make_stage(MAIN, config, dataset)]
        if with_baseline and config.model.kind != "standard":
            stages.append(make_stage(BASELINE, baseline_config(config), dataset))
        return cls(dataset=dataset, stages=stages)

    @classmethod
    def baseline_for(cls, run: Any) -> "LiveJob":
        """A job that trains only the plain baseline of an existing run."""
        from kamoe_viz.training import baseline_config

        return cls(dataset=run.dataset, stages=[make_stage(BASELINE, baseline_config(run.config), run.dataset)],
                   run=run)

    @property
    def stage(self) -> Stage | None:
        return self.stages[self.index] if self.index < len(self.stages) else None

    @property
    def active(self) -> bool:
        return not self.finished and self.stage is not None

    def advance(self, budget: float = 0.35) -> list[str]:
        """Train the current stage for about ``budget`` seconds (at least one epoch); the stages that finished."""
        stage = self.stage
        if stage is None or self.finished:
            self.finished = True
            return []
        started = time.perf_counter()
        try:
            while not stage.trainer.done:
                stage.epochs.extend(stage.trainer.run_epochs(1))
                if time.perf_counter() - started >= budget:
                    break
            if stage.trainer.done:
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
        stage.trainer.stop()
        self.stages = self.stages[: self.index + 1]
        try:
            return [self._finish_stage(stage)]
        except Exception as err:
            self._fail(f"Stopping failed: {type(err).__name__}: {err}", traceback.format_exc(limit=6))
            return []

    def _finish_stage(self, stage: Stage) -> str:
        from kamoe_viz.training import TrainedRun

        result = stage.trainer.finish()
        if stage.kind == MAIN:
            stage.model.cpu().eval()
            self.run = TrainedRun(config=stage.config, dataset=self.dataset, model=stage.model, result=result)
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
