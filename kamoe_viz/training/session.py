"""A training session a person drives like TensorFlow Playground: play, pause, step one epoch, reset, new data.

The session trains in the caller's thread, a few epochs at a time (:meth:`TrainingSession.tick` from a UI's refresh
loop), so a paused session does nothing and continuing is the same as never having paused: same seed, same batch
order, same weights as an uninterrupted run. Every epoch on the timeline's schedule is snapshotted
(:mod:`kamoe_viz.training.timeline`), and the epoch a person pauses at is kept too while there is room.

Settings that may change mid-run (:data:`LIVE_SETTINGS`: the learning rate, the balance-loss weight) apply from the
next epoch on; every other setting fixes the model's shape or its data and is locked until Reset
(:data:`LOCK_REASON`).
"""

from __future__ import annotations

import copy
import time
from typing import TYPE_CHECKING, Any

from kamoe_viz.config import RunConfig
from kamoe_viz.errors import KamoeError, ValidationError
from kamoe_viz.training.results import EpochInfo, TrainedRun
from kamoe_viz.training.timeline import Snapshot, Timeline

if TYPE_CHECKING:
    from kamoe_viz.data.base import Dataset

# label -> (epochs per tick or None for as many as fit in REAL_TIME_BUDGET, seconds between ticks)
SPEEDS: dict[str, tuple[int | None, float]] = {"real time": (None, 0.3), "1 epoch/s": (1, 1.0), "5 epochs/s": (1, 0.2)}
DEFAULT_SPEED = "5 epochs/s"
REAL_TIME_BUDGET = 0.25  # seconds of training per tick at "real time"
LIVE_SETTINGS = ("lr", "balance_loss")  # train.* fields that may change between epochs
LOCK_REASON = (
    "Locked while a model exists: this setting fixes the model's shape or the data it trains on. "
    "Press Reset (or Train) to start over with a new value."
)
FIXED_DATA_REASON = "New data resamples generated datasets only; this dataset is fixed (real data or a file)."


def is_generated(dataset_name: str) -> bool:
    """True for datasets drawn from a seed (synthetic tabular data and the regime-switching series)."""
    from kamoe_viz.data import sequences
    from kamoe_viz.data.registry import dataset_info

    try:
        info = dataset_info(dataset_name)
    except KamoeError:
        return False
    return info.loader.__module__.endswith(".synthetic") or info.loader is sequences.regime_series


def epochs_of(run: TrainedRun) -> list[EpochInfo]:
    """The epoch records of a finished run, rebuilt from its history (best epoch so far, as training saw it)."""
    history = run.result.history
    total, best, best_loss, infos = int(run.config.train.epochs), None, float("inf"), []
    for row in history.itertuples(index=False):
        val = float(row.val_loss)
        if val < best_loss:
            best, best_loss = int(row.epoch), val
        elapsed = float(getattr(row, "seconds", 0.0) or 0.0)
        infos.append(
            EpochInfo(int(row.epoch), float(row.train_loss), val, float(row.lr), elapsed, 0.0, best, epochs_total=total)
        )
    return infos


def live_changes(old: RunConfig, new: RunConfig) -> tuple[dict[str, Any], list[str]]:
    """What differs between two configs: ({live train setting: new value}, [locked dotted names])."""
    a, b = old.to_dict(), new.to_dict()
    live, locked = {}, []
    for section in ("data", "model", "train"):
        for key in sorted(set(a[section]) | set(b[section])):
            if a[section].get(key) != b[section].get(key):
                if section == "train" and key in LIVE_SETTINGS:
                    live[key] = b[section][key]
                else:
                    locked.append(f"{section}.{key}")
    return live, locked


class TrainingSession:
    """One model being trained interactively, with its timeline. ``playing`` is only a flag: the caller advances
    training with :meth:`tick` (or :meth:`step`)."""

    def __init__(self, config: RunConfig, dataset: Dataset | None = None, snapshot_every: int | None = None) -> None:
        self.config = copy.deepcopy(config).validate()
        if dataset is None:
            from kamoe_viz.data import load_dataset

            dataset = load_dataset(self.config.data)
        self.dataset = dataset
        self.snapshot_every = snapshot_every
        self.playing = False
        self.run: TrainedRun | None = None
        self._build()

    @classmethod
    def of_run(cls, run: TrainedRun) -> TrainingSession:
        """A finished session showing ``run`` (trained with one click, or reloaded) as if it had been played to its
        end: its epochs, its timeline's last snapshot. Play, Step and Reset start a new model from epoch 0, exactly
        as they do after a session played to its end. ``run`` must have a timeline."""
        if run.timeline is None or not run.timeline.snapshots:
            raise ValidationError("run.timeline", None, "is needed to show a run in the playground")
        self = cls.__new__(cls)
        self.config = copy.deepcopy(run.config)
        self.dataset = run.dataset
        self.snapshot_every = None
        self.playing = False
        self.model = run.model
        self.timeline = run.timeline
        self.epochs = epochs_of(run)
        self.run = run
        self._live = run.timeline.snapshots[-1]
        return self

    def _build(self) -> None:
        import torch

        from kamoe_viz.nn import build_model
        from kamoe_viz.training.trainer import Trainer

        torch.manual_seed(self.config.train.seed)
        self.model = build_model(self.config.model, self.dataset)
        self.trainer = Trainer(self.model, self.dataset, self.config.train)
        self.timeline = Timeline.create(
            self.model,
            self.dataset,
            self.config.train.epochs,
            self.snapshot_every,
            batch_size=self.config.train.batch_size,
        )
        self.epochs: list[EpochInfo] = []
        self.playing = False
        self.run = None
        self._live: Snapshot | None = self.timeline.snapshots[0]

    # ----- state ------------------------------------------------------------------------------------------------------
    @property
    def epoch(self) -> int:
        return self.epochs[-1].epoch if self.epochs else 0

    @property
    def total_epochs(self) -> int:
        return int(self.config.train.epochs)

    @property
    def done(self) -> bool:
        return self.run is not None

    @property
    def in_progress(self) -> bool:
        """Started (at least one epoch) and not finished: the model whose settings are locked until Reset."""
        return self.epoch > 0 and not self.done

    @property
    def last(self) -> EpochInfo | None:
        return self.epochs[-1] if self.epochs else None

    @property
    def can_new_data(self) -> bool:
        return is_generated(self.config.data.name)

    def status_line(self) -> str:
        """``Epoch N / M · train loss … · val loss …`` (and why training ended, once it has)."""
        text = f"Epoch {self.epoch} / {self.total_epochs}"
        if self.last is not None:
            text += f" · train loss {self.last.train_loss:.4g} · val loss {self.last.val_loss:.4g}"
        if self.done and self.run is not None:
            reason = self.run.result.stopped_reason
            text += f" · {'finished' if reason == 'completed' else reason.replace('_', ' ')}"
        elif self.playing:
            text += " · playing"
        elif self.epoch:
            text += " · paused"
        return text

    # ----- transport --------------------------------------------------------------------------------------------------
    def play(self) -> None:
        self.playing = not self.done

    def pause(self) -> None:
        """Stop advancing; the epoch paused at joins the timeline (while there is room) so it can be found later."""
        self.playing = False
        if not self.done and self.last is not None:
            self.timeline.record(self.model, self.epoch, self.last.train_loss, self.last.val_loss, force=True)

    def step(self, n: int = 1) -> list[EpochInfo]:
        """Train ``n`` epochs now (pausing first) and keep the epoch reached on the timeline."""
        self.playing = False
        infos = self._train(n)
        self.pause()
        return infos

    def tick(self, speed: str = DEFAULT_SPEED) -> list[EpochInfo]:
        """While playing: train what one refresh of ``speed`` allows (see :data:`SPEEDS`); nothing when paused."""
        if speed not in SPEEDS:
            raise ValidationError("speed", speed, f"must be one of {', '.join(SPEEDS)}")
        if not self.playing or self.done:
            return []
        per_tick, _ = SPEEDS[speed]
        if per_tick is not None:
            return self._train(per_tick)
        return self.advance(REAL_TIME_BUDGET)

    def advance(self, budget: float) -> list[EpochInfo]:
        """Train for about ``budget`` seconds (at least one epoch)."""
        started, infos = time.perf_counter(), []
        while not self.done:
            infos += self._train(1)
            if time.perf_counter() - started >= budget:
                break
        return infos

    def reset(self) -> None:
        """Re-initialise the model with the same seed (same data, current settings); the timeline starts over."""
        self._build()

    def new_data(self) -> None:
        """Draw the dataset again with the next data seed, then reset. Only for generated datasets."""
        if not self.can_new_data:
            raise ValidationError("data.name", self.config.data.name, FIXED_DATA_REASON)
        from kamoe_viz.data import load_dataset

        self.config.data.seed = (int(self.config.data.seed) + 1) % 2**31
        self.dataset = load_dataset(self.config.data)
        self._build()

    def update(self, **changes: Any) -> None:
        """Change live settings (:data:`LIVE_SETTINGS`); they apply from the next epoch on."""
        locked = [k for k in changes if k not in LIVE_SETTINGS]
        if locked:
            raise ValidationError(f"train.{locked[0]}", changes[locked[0]], LOCK_REASON)
        if self.done:
            raise ValidationError("session", "finished", "cannot change settings once training has ended; Reset")
        self.trainer.update_settings(**changes)
        for key in changes:
            setattr(self.config.train, key, getattr(self.trainer.config, key))

    def finish(self) -> TrainedRun:
        """End training now (or return the finished run): the timeline gets the last epoch, the model its best
        weights (on the CPU, eval mode)."""
        if self.run is not None:
            return self.run
        last = self.last
        self.timeline.finalize(
            self.model, self.epoch, last.train_loss if last else None, last.val_loss if last else None
        )
        self._live = self.timeline.snapshots[-1]
        self.trainer.stop()
        result = self.trainer.finish()
        self.model.cpu().eval()
        self.playing = False
        self.run = TrainedRun(
            config=copy.deepcopy(self.config),
            dataset=self.dataset,
            model=self.model,
            result=result,
            timeline=self.timeline,
        )
        return self.run

    # ----- what the live view draws -----------------------------------------------------------------------------------
    def current(self) -> Snapshot:
        """A snapshot of the model as it is now (the timeline's, when it has this epoch; else taken and cached)."""
        if self._live is not None and self._live.epoch == self.epoch:
            return self._live
        snaps = self.timeline.snapshots
        if snaps and snaps[-1].epoch == self.epoch:
            self._live = snaps[-1]
        else:
            last = self.last
            self._live = self.timeline.capture(
                self.model, self.epoch, last.train_loss if last else None, last.val_loss if last else None
            )
        return self._live

    def _train(self, n: int) -> list[EpochInfo]:
        infos: list[EpochInfo] = []
        for _ in range(max(0, int(n))):
            if self.done:
                break
            new = self.trainer.run_epochs(1)
            for info in new:
                self.timeline.record(self.model, info.epoch, info.train_loss, info.val_loss)
            infos += new
            self.epochs += new
            if self.trainer.done or not new:
                self.finish()
        return infos


__all__ = [
    "DEFAULT_SPEED",
    "FIXED_DATA_REASON",
    "LIVE_SETTINGS",
    "LOCK_REASON",
    "SPEEDS",
    "TrainingSession",
    "epochs_of",
    "is_generated",
    "live_changes",
]
