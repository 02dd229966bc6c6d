"""`train`: train one model from the command line, print its test metrics (with ``--json``: one JSON
object on stdout, the summary on stderr).

    python -m kamoe_viz train --dataset california --gate grkan --expert mlp --experts 3 --epochs 200 --seed 0 --json
    python -m kamoe_viz train --csv data.csv --target price --features area,rooms --epochs 50

Exit status: 0 trained, 2 invalid input (one line on stderr), 3 training diverged (results of the best weights
are still printed, then ``error: Training diverged in epoch N ...`` on stderr),
130 interrupted before the first epoch finished (an interrupt later stops training and reports the best epoch).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import sys
import time
from typing import TYPE_CHECKING, Any, TextIO

from kamoe_viz.cli import tracking
from kamoe_viz.cli.train_args import add_arguments, config_from_args, set_budget_limits, with_preset
from kamoe_viz.config import RunConfig
from kamoe_viz.errors import TrainingDivergedError, ValidationError
from kamoe_viz.nn.fast import plain_autograd
from kamoe_viz.training.evaluation import routing_report

if TYPE_CHECKING:
    from kamoe_viz.data.base import Dataset
    from kamoe_viz.nn.moe import KAMoE
    from kamoe_viz.training.results import EpochInfo, TrainedRun
    from kamoe_viz.training.timeline import Timeline
    from kamoe_viz.training.trainer import EpochCallback

EXIT_DIVERGED = 3


def add_command(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "train",
        help="train one model and print its test metrics",
        description="Train a mixture of experts (or the plain single-expert network with --kind standard) on a "
        "built-in dataset or your CSV, and print its test metrics.",
        epilog="Exit status: 0 trained; 2 invalid input; 3 training diverged (metrics of the best weights before "
        "the divergence are still printed).",
    )
    add_arguments(p)
    p.set_defaults(func=cmd_train)
    return p


def _secs(seconds: float) -> str:
    return f"{seconds:.1f}s" if seconds < 10 else f"{seconds:.0f}s"


# ----- progress -------------------------------------------------------------------------------------------------------
class ProgressBar:
    """A one-line text bar on a terminal; on a pipe or log file, a plain line every tenth of the run."""

    def __init__(self, total: int, stream: TextIO = sys.stderr, width: int = 28) -> None:
        self.total, self.stream, self.width = max(1, total), stream, width
        self.tty = bool(getattr(stream, "isatty", lambda: False)())
        self.every = max(1, self.total // 10)

    def __call__(self, info: EpochInfo) -> None:
        filled = int(self.width * min(1.0, info.epoch / self.total))
        bar = "#" * filled + "." * (self.width - filled)
        text = (
            f"[{bar}] epoch {info.epoch}/{self.total}  train {info.train_loss:.4f}  val {info.val_loss:.4f}  "
            f"best {info.best_epoch}  lr {info.lr:.2g}  {_secs(info.seconds_elapsed)}, "
            f"<= {_secs(info.eta_seconds)} left"
        )
        if self.tty:
            self.stream.write("\r\033[K" + text)
        elif info.epoch % self.every == 0 or info.epoch == 1:
            self.stream.write(text + "\n")
        self.stream.flush()

    def close(self) -> None:
        if self.tty:
            self.stream.write("\n")
            self.stream.flush()


# ----- the command ----------------------------------------------------------------------------------------------------
def _json_value(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _save(run: TrainedRun, runs_dir: str | None) -> str:
    try:
        from kamoe_viz.runstore import RunStore
    except ImportError:
        raise ValidationError("--save", True, "is not available: this installation has no run store") from None
    return RunStore(runs_dir).save(run)


def _timeline(args: argparse.Namespace, model: KAMoE, dataset: Dataset, config: RunConfig) -> Timeline | None:
    """The training timeline ``--snapshot-every`` asks for (epoch 0 taken now), or None."""
    if args.snapshot_every is None:
        return None
    from kamoe_viz.training.timeline import Timeline

    try:
        return Timeline.create(
            model, dataset, config.train.epochs, args.snapshot_every, batch_size=config.train.batch_size
        )
    except ValidationError as err:
        raise ValidationError("--snapshot-every", args.snapshot_every, err.allowed) from None


def _callbacks(bar: EpochCallback | None, timeline: Timeline | None, model: KAMoE) -> EpochCallback | None:
    record = timeline.callback(model) if timeline is not None else None
    if record is None:
        return bar

    def on_epoch(info: EpochInfo) -> None:
        if bar is not None:
            bar(info)
        record(info)

    return on_epoch


def best_epoch_text(best_epoch: int | None) -> str:
    """'best epoch 12', or what None means: no epoch's validation loss improved on the untrained model's."""
    return f"best epoch {best_epoch}" if best_epoch is not None else "no epoch improved on the start"


def cap_threads(threads: int | None) -> int | None:
    """--threads above this machine's cores is lowered to the core count, with a warning on stderr."""
    cores = os.cpu_count() or 1
    if threads is not None and threads > cores:
        print(
            f"warning: --threads {threads} is more than this machine's {cores} cores; using {cores}.", file=sys.stderr
        )
        return cores
    return threads


def cmd_train(args: argparse.Namespace) -> int:
    if args.threads is not None and args.threads < 1:
        raise ValidationError("--threads", args.threads, "must be at least 1")
    args.threads = cap_threads(args.threads)
    config = config_from_args(args)  # bad input is reported before torch is even loaded
    if getattr(args, "preset", None):
        config = with_preset(args.preset, config)
    set_budget_limits(args)
    with plain_autograd() if args.no_fast else contextlib.nullcontext():
        return _train(args, config)


def _train(args: argparse.Namespace, config: RunConfig) -> int:
    import torch

    from kamoe_viz.budget import check_training
    from kamoe_viz.data import load_dataset
    from kamoe_viz.nn import build_model
    from kamoe_viz.training import TrainedRun, Trainer, configure_cpu_threads, resolve_device, tune_allocator

    configure_cpu_threads(args.threads, batch_size=config.train.batch_size)
    tune_allocator()
    resolve_device(config.train.device)
    started = time.perf_counter()
    dataset = load_dataset(config.data)
    check_training(config, dataset)  # a model over the budget is refused before anything is built (exit 2)
    torch.manual_seed(config.train.seed)
    model = build_model(config.model, dataset)
    bar = None if args.quiet else ProgressBar(config.train.epochs)
    timeline = _timeline(args, model, dataset, config)
    tracker = tracking.open_for_train(args, config)  # None without --mlflow / --tensorboard
    on_epoch = bar if tracker is None else tracker.epoch_logger(dataset, config.train.batch_size, then=bar)
    trainer = Trainer(
        model, dataset, config.train, on_epoch=_callbacks(on_epoch, timeline, model), raise_on_divergence=True
    )
    interrupted, diverged = False, None
    try:
        while not trainer.done:
            trainer.run_epochs(1)
    except TrainingDivergedError as exc:  # the best weights are still scored, saved and reported below
        diverged = exc
    except KeyboardInterrupt:
        interrupted = True
        if trainer.epoch == 0:
            raise
        trainer.stop()
    finally:
        if bar is not None:
            bar.close()
    if timeline is not None:  # before finish(), which restores the best weights
        last = trainer.rows[-1] if trainer.rows else {}
        timeline.finalize(model, trainer.epoch, last.get("train_loss"), last.get("val_loss"))
    result = trainer.finish()
    model.cpu().eval()
    run = TrainedRun(config=config, dataset=dataset, model=model, result=result, timeline=timeline)
    tracking.finish_train(tracker, run)
    if args.save:
        run.run_id = _save(run, args.runs_dir)
    total = time.perf_counter() - started
    _report(run, total, interrupted, args.json)
    if diverged is not None:
        print(f"error: {diverged}", file=sys.stderr)
        return EXIT_DIVERGED
    return 0


def _report(run: TrainedRun, total_seconds: float, interrupted: bool, as_json: bool) -> None:
    result, config, ds = run.result, run.config, run.dataset
    m = result.metrics
    what = (
        "standard network"
        if config.model.kind == "standard"
        else f"{config.model.n_experts} {config.model.expert} experts, {config.model.gate} gate"
    )
    human = sys.stderr if as_json else sys.stdout  # --json: stdout holds only the JSON object
    main = ["r2", "rmse", "mae"] if ds.task == "regression" else ["accuracy", "log_loss"]
    sizes = ds.sizes()
    print(
        f"{ds.name}: {ds.task}, {sizes['train']}/{sizes['val']}/{sizes['test']} train/val/test rows; "
        f"{what}; {result.params:,} parameters; device {result.device}",
        file=human,
    )
    print(
        f"stopped: {result.stopped_reason}{' (interrupted)' if interrupted else ''} after {result.epochs_run} "
        f"epochs, {best_epoch_text(result.best_epoch)}, {result.seconds:.1f} s training",
        file=human,
    )
    from kamoe_viz.presets import run_epoch_cap_notice

    notice = None if interrupted else run_epoch_cap_notice(result, run.config)
    if notice:
        print(f"note: {notice}", file=human)
    print("test:       " + "  ".join(f"{k} {m[k]:.4f}" for k in main if k in m), file=human)
    print("validation: " + "  ".join(f"{k} {m['val_' + k]:.4f}" for k in main if "val_" + k in m), file=human)
    if result.message and result.stopped_reason != "diverged":  # a divergence ends the command as its error
        print(f"warning: {result.message}", file=sys.stderr)
    if run.run_id:
        print(f"saved as run {run.run_id}", file=human)
    if as_json:
        record = {k: _json_value(v) for k, v in m.items()}
        record.update(
            params=result.params,
            epochs=result.epochs_run,
            best_epoch=result.best_epoch,
            stopped_reason=result.stopped_reason,
            seconds=round(result.seconds, 3),
            total_seconds=round(total_seconds, 3),
            device=result.device,
            dataset=ds.name,
            task=ds.task,
            kind=config.model.kind,
            gate=config.model.gate if config.model.kind == "moe" else None,
            expert=config.model.expert,
            n_experts=config.model.n_experts,
            seed=config.train.seed,
            message=result.message,
            run_id=run.run_id,
            routing=config.model.routing if config.model.kind == "moe" else None,
        )
        record.update({k: _json_value(v) for k, v in routing_report(run).items()})
        print(json.dumps(record))
