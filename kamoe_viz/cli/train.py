"""`train`: train one model from the command line, print its test metrics (and one JSON line with ``--json``).

    python -m kamoe_viz train --dataset california --gate grkan --expert mlp --experts 3 --epochs 200 --seed 0 --json
    python -m kamoe_viz train --csv data.csv --target price --features area,rooms --epochs 50

Exit status: 0 trained, 2 invalid input (one line on stderr), 3 training diverged (results are still printed),
130 interrupted before the first epoch finished (an interrupt later stops training and reports the best epoch).
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path
from typing import Any, TextIO

from kamoe_viz.cli import tracking
from kamoe_viz.config import (DEVICES, EXPERT_TYPES, GATE_ACTIVATIONS, GATE_FAMILIES, MODEL_KINDS, OBJECTIVES,
                              ROUTINGS, DataConfig, ModelConfig, RunConfig, TrainConfig)
from kamoe_viz.errors import ValidationError
from kamoe_viz.training.evaluation import ROUTING_JSON_KEYS, routing_report  # noqa: F401 (re-exported)

EXIT_DIVERGED = 3
# config field -> the flag that sets it, so a validation message names what the user typed
FLAGS = {"data.name": "--dataset", "data.options": "--option", "data.seed": "--data-seed", "data.csv_path": "--csv",
         "data.target": "--target", "data.features": "--features", "model.kind": "--kind", "model.gate": "--gate",
         "model.gate_activation": "--gate-activation", "model.top_k": "--top-k", "model.n_experts": "--experts",
         "model.expert": "--expert", "model.expert_hidden": "--hidden", "model.return_sequences":
         "--return-sequences", "train.epochs": "--epochs", "train.batch_size": "--batch-size", "train.lr": "--lr",
         "train.weight_decay": "--weight-decay", "train.early_stopping": "--patience",
         "train.max_grad_norm": "--max-grad-norm", "train.seed": "--seed", "train.device": "--device",
         "model.routing": "--routing", "model.capacity_factor": "--capacity-factor",
         "model.shared_experts": "--shared-experts", "model.bias_update_rate": "--bias-update-rate",
         "train.balance_loss": "--balance-loss", "train.z_loss": "--z-loss", "train.objective": "--objective",
         "train.gate_lr_scale": "--gate-lr-scale", "train.restarts": "--restarts",
         "train.restart_epochs": "--restart-epochs"}
ROUTING_MODEL_FIELDS = ("routing", "capacity_factor", "shared_experts", "bias_update_rate")
ROUTING_TRAIN_FIELDS = ("balance_loss", "z_loss", "objective", "gate_lr_scale", "restarts", "restart_epochs")


def _defaults() -> tuple[ModelConfig, TrainConfig]:
    return ModelConfig(), TrainConfig()


def add_command(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    model, train = _defaults()
    p = subparsers.add_parser(
        "train", help="train one model and print its test metrics",
        description="Train a mixture of experts (or the plain single-expert network with --kind standard) on a "
                    "built-in dataset or your CSV, and print its test metrics.",
        epilog="Exit status: 0 trained; 2 invalid input; 3 training diverged (metrics of the best weights before "
               "the divergence are still printed).")
    data = p.add_argument_group("data")
    data.add_argument("--dataset", default=None, metavar="NAME",
                      help="built-in dataset (default: regimes); see `python -m kamoe_viz datasets`")
    data.add_argument("--csv", default=None, metavar="PATH", help="train on your own CSV instead of --dataset")
    data.add_argument("--target", default=None, metavar="COLUMN", help="the column of --csv to predict")
    data.add_argument("--features", default=None, metavar="A,B,...", help="feature columns of --csv (default: all "
                                                                        "other numeric columns)")
    data.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                      help="dataset option, repeatable (e.g. --option noise=0.2)")
    data.add_argument("--data-seed", type=int, default=0, metavar="N", help="seed of the train/val/test split")
    m = p.add_argument_group("model")
    m.add_argument("--kind", choices=MODEL_KINDS, default=model.kind, help="moe (default) or standard (one expert, "
                                                                          "no gate)")
    m.add_argument("--gate", choices=GATE_FAMILIES, default=model.gate)
    m.add_argument("--gate-activation", choices=GATE_ACTIVATIONS, default=model.gate_activation)
    t = p.add_argument_group("training")
    add_routing_arguments(m, t)
    m.add_argument("--expert", choices=EXPERT_TYPES, default=model.expert)
    m.add_argument("--experts", type=int, default=model.n_experts, metavar="N", help="number of experts")
    m.add_argument("--hidden", default=",".join(map(str, model.expert_hidden)), metavar="W[,W...]",
                   help="expert layer widths (default %(default)s)")
    m.add_argument("--return-sequences", action="store_true", help="LSTM/GRU experts predict every time step")
    t.add_argument("--epochs", type=int, default=train.epochs, metavar="N")
    t.add_argument("--batch-size", type=int, default=train.batch_size, metavar="N")
    t.add_argument("--lr", type=float, default=train.lr, metavar="X", help="learning rate (default %(default)g)")
    t.add_argument("--weight-decay", type=float, default=train.weight_decay, metavar="X")
    t.add_argument("--patience", type=int, default=train.early_stopping, metavar="N",
                   help="early-stopping patience in epochs, 0 = off (default %(default)s)")
    t.add_argument("--max-grad-norm", type=float, default=train.max_grad_norm, metavar="X",
                   help="clip the gradient norm to X (0 = off)")
    t.add_argument("--seed", type=int, default=train.seed, metavar="N", help="seed of initialisation and shuffling")
    t.add_argument("--device", choices=DEVICES, default=train.device)
    t.add_argument("--threads", type=int, default=None, metavar="N", help="CPU threads for torch (default: "
                   "$KAMOE_THREADS, else 1, or up to 4 cores from batch 512 on: small batches train fastest on "
                   "one thread)")
    add_budget_arguments(t)
    t.add_argument("--preset", default=None, metavar="NAME",
                   help="start from a preset (see `python -m kamoe_viz presets`); flags you give still win")
    o = p.add_argument_group("output")
    o.add_argument("--json", action="store_true", help="end with one JSON line of metrics and run facts")
    o.add_argument("--quiet", action="store_true", help="no progress bar")
    o.add_argument("--snapshot-every", type=int, default=None, metavar="N",
                   help="record a training timeline (gate weights, routing metrics, region maps) every N epochs, "
                        "at most 200 snapshots; saved with --save and shown on the Gates, Splines and Experts pages")
    o.add_argument("--save", action="store_true", help="store the run (see the Runs page) and print its id")
    o.add_argument("--runs-dir", default=None, metavar="DIR", help="where --save stores runs (default: env "
                                                                  "KAMOE_RUNS_DIR or ./runs)")
    tracking.add_options(p)
    p.set_defaults(func=cmd_train)
    return p


def add_budget_arguments(group: Any) -> None:
    """--max-params, --max-memory-mb: raise (or lower) the cost budget of one model (kamoe_viz/budget.py)."""
    from kamoe_viz import budget

    group.add_argument("--max-params", type=int, default=None, metavar="N",
                       help=f"largest model in parameters (default ${budget.ENV_MAX_PARAMS}, else "
                            f"{budget.DEFAULT_MAX_PARAMS:,})")
    group.add_argument("--max-memory-mb", type=int, default=None, metavar="MB",
                       help=f"largest training-memory estimate (default ${budget.ENV_MAX_MEMORY_MB}, else "
                            f"{budget.DEFAULT_MAX_MEMORY_MB:,})")


def set_budget_limits(args: argparse.Namespace) -> None:
    """Copy --max-params / --max-memory-mb into the environment, where the library's budget reads them."""
    from kamoe_viz import budget

    for value, name, flag in ((getattr(args, "max_params", None), budget.ENV_MAX_PARAMS, "--max-params"),
                              (getattr(args, "max_memory_mb", None), budget.ENV_MAX_MEMORY_MB, "--max-memory-mb")):
        if value is not None:
            if value < 1:
                raise ValidationError(flag, value, "must be a positive whole number")
            os.environ[name] = str(value)


def add_routing_arguments(model_group: Any, train_group: Any) -> None:
    """--routing, --top-k, --capacity-factor, --shared-experts, --bias-update-rate (model) and --balance-loss,
    --z-loss, --objective, --gate-lr-scale, --restarts, --restart-epochs (training); shared by train and compare."""
    model, train = _defaults()
    model_group.add_argument("--routing", choices=ROUTINGS, default=model.routing,
                             help="how gate logits become expert weights (default dense; the README's routers table "
                                  "defines each)")
    model_group.add_argument("--top-k", type=int, default=model.top_k, metavar="K",
                             help="experts per row for topk, noisy_topk, sigmoid_bias (a K > 0 alone means topk)")
    model_group.add_argument("--capacity-factor", type=float, default=model.capacity_factor, metavar="C",
                             help="switch, expert_choice: capacity ceil(C * rows / experts) (default %(default)g)")
    model_group.add_argument("--shared-experts", type=int, default=model.shared_experts, metavar="N",
                             help="N always-on experts beside the routed ones (DeepSeekMoE; default 0)")
    model_group.add_argument("--bias-update-rate", type=float, default=model.bias_update_rate, metavar="U",
                             help="sigmoid_bias: b_i += U * sign(mean load - load_i) per step (default %(default)g)")
    train_group.add_argument("--balance-loss", type=float, default=train.balance_loss, metavar="A",
                             help="weight of the Switch balance loss A * E * sum f_i P_i (0 = off)")
    train_group.add_argument("--z-loss", type=float, default=train.z_loss, metavar="B",
                             help="weight of the router z-loss (0 = off)")
    train_group.add_argument("--objective", choices=OBJECTIVES, default=train.objective,
                             help="mse: the task loss of the mixed prediction; likelihood: the mixture likelihood "
                                  "(Jacobs et al. 1991), which rewards each row's best expert")
    train_group.add_argument("--gate-lr-scale", type=float, default=train.gate_lr_scale, metavar="X",
                             help="learning rate of the gate and router = lr * X (default 1)")
    train_group.add_argument("--restarts", type=int, default=train.restarts, metavar="R",
                             help="try R initialisations for --restart-epochs epochs each and train the one with "
                                  "the lowest validation loss (default 1 = off)")
    train_group.add_argument("--restart-epochs", type=int, default=train.restart_epochs, metavar="N",
                             help="epochs each restart trains before they are compared (default %(default)d)")


def routing_fields(args: argparse.Namespace) -> tuple[dict[str, Any], dict[str, Any]]:
    """(ModelConfig fields, TrainConfig fields) of the routing arguments."""
    return ({name: getattr(args, name) for name in ROUTING_MODEL_FIELDS},
            {name: getattr(args, name) for name in ROUTING_TRAIN_FIELDS})


# ----- arguments -> config --------------------------------------------------------------------------------------------
def _option_value(text: str) -> Any:
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return {"true": True, "false": False}.get(text.lower(), text)


def _hidden(text: str) -> tuple[int, ...]:
    parts = [p.strip() for p in str(text).split(",")]
    try:
        values = tuple(int(p) for p in parts)
    except ValueError:
        raise ValidationError("--hidden", text,
                              "must be layer widths separated by commas, e.g. 100 or 64,32") from None
    return values


def config_from_args(args: argparse.Namespace) -> RunConfig:
    """The validated RunConfig the arguments describe."""
    options: dict[str, Any] = {}
    for item in args.option:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ValidationError("--option", item, "must look like KEY=VALUE, e.g. noise=0.2")
        options[key.strip()] = _option_value(value.strip())
    if args.csv is not None:
        if args.dataset:
            raise ValidationError("--dataset", args.dataset, "cannot be combined with --csv; use one of them")
        if not args.target:
            raise ValidationError("--target", None, "is required with --csv (the column to predict)")
        if not Path(args.csv).is_file():
            raise ValidationError("--csv", args.csv, "must be an existing CSV file")
        features = tuple(f.strip() for f in args.features.split(",") if f.strip()) if args.features else None
        data = DataConfig(name="csv", csv_path=str(args.csv), target=args.target, features=features,
                          seed=args.data_seed, options=options)
    else:
        if args.target or args.features:
            raise ValidationError("--target" if args.target else "--features", args.target or args.features,
                                  "only applies together with --csv")
        data = DataConfig(name=args.dataset or "regimes", options=options, seed=args.data_seed)
    model_routing, train_routing = routing_fields(args)
    model = ModelConfig(kind=args.kind, gate=args.gate, gate_activation=args.gate_activation, top_k=args.top_k,
                        n_experts=args.experts, expert=args.expert, expert_hidden=_hidden(args.hidden),
                        return_sequences=args.return_sequences, **model_routing)
    train = TrainConfig(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, weight_decay=args.weight_decay,
                        early_stopping=args.patience, max_grad_norm=args.max_grad_norm, seed=args.seed,
                        device=args.device, **train_routing)
    return RunConfig(data=data, model=model, train=train).validate()


def _with_preset(name: str, given: RunConfig) -> RunConfig:
    """The preset's config, with every setting the command line changed from its default laid over it."""
    from kamoe_viz.cli import build_parser
    from kamoe_viz.presets import preset_config

    base = preset_config(name).to_dict()
    defaults = config_from_args(build_parser().parse_args(["train"])).to_dict()
    for section, values in given.to_dict().items():
        for key, value in values.items():
            if value != defaults[section][key]:
                base[section][key] = value
    return RunConfig.from_dict(base).validate()


def _secs(seconds: float) -> str:
    return f"{seconds:.1f}s" if seconds < 10 else f"{seconds:.0f}s"


# ----- progress -------------------------------------------------------------------------------------------------------
class ProgressBar:
    """A one-line text bar on a terminal; on a pipe or log file, a plain line every tenth of the run."""

    def __init__(self, total: int, stream: TextIO = sys.stderr, width: int = 28) -> None:
        self.total, self.stream, self.width = max(1, total), stream, width
        self.tty = bool(getattr(stream, "isatty", lambda: False)())
        self.every = max(1, self.total // 10)

    def __call__(self, info: Any) -> None:
        filled = int(self.width * min(1.0, info.epoch / self.total))
        bar = "#" * filled + "." * (self.width - filled)
        text = (f"[{bar}] epoch {info.epoch}/{self.total}  train {info.train_loss:.4f}  val {info.val_loss:.4f}  "
                f"best {info.best_epoch}  lr {info.lr:.2g}  {_secs(info.seconds_elapsed)}, "
                f"<= {_secs(info.eta_seconds)} left")
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


def _save(run: Any, runs_dir: str | None) -> str:
    try:
        from kamoe_viz.runstore import RunStore
    except ImportError:
        raise ValidationError("--save", True, "is not available: this installation has no run store") from None
    return RunStore(runs_dir).save(run)


def _timeline(args: argparse.Namespace, model: Any, dataset: Any, config: RunConfig) -> Any:
    """The training timeline ``--snapshot-every`` asks for (epoch 0 taken now), or None."""
    if args.snapshot_every is None:
        return None
    from kamoe_viz.training.timeline import Timeline

    try:
        return Timeline.create(model, dataset, config.train.epochs, args.snapshot_every,
                               batch_size=config.train.batch_size)
    except ValidationError as err:
        raise ValidationError("--snapshot-every", args.snapshot_every, err.allowed) from None


def _callbacks(bar: Any, timeline: Any, model: Any) -> Any:
    record = timeline.callback(model) if timeline is not None else None
    if record is None:
        return bar
    def on_epoch(info: Any) -> None:
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
        print(f"warning: --threads {threads} is more than this machine's {cores} cores; using {cores}.",
              file=sys.stderr)
        return cores
    return threads


def cmd_train(args: argparse.Namespace) -> int:
    if args.threads is not None and args.threads < 1:
        raise ValidationError("--threads", args.threads, "must be at least 1")
    args.threads = cap_threads(args.threads)
    config = config_from_args(args)  # bad input is reported before torch is even loaded
    if getattr(args, "preset", None):
        config = _with_preset(args.preset, config)
    set_budget_limits(args)
    import torch

    from kamoe_viz.budget import check_training
    from kamoe_viz.data import load_dataset
    from kamoe_viz.nn import build_model
    from kamoe_viz.training import Trainer, TrainedRun, configure_cpu_threads, resolve_device, tune_allocator

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
    trainer = Trainer(model, dataset, config.train, on_epoch=_callbacks(on_epoch, timeline, model))
    interrupted = False
    try:
        while not trainer.done:
            trainer.run_epochs(1)
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
    return EXIT_DIVERGED if result.stopped_reason == "diverged" else 0


def _report(run: Any, total_seconds: float, interrupted: bool, as_json: bool) -> None:
    result, config, ds = run.result, run.config, run.dataset
    m = result.metrics
    what = "standard network" if config.model.kind == "standard" else \
        f"{config.model.n_experts} {config.model.expert} experts, {config.model.gate} gate"
    main = ["r2", "rmse", "mae"] if ds.task == "regression" else ["accuracy", "log_loss"]
    sizes = ds.sizes()
    print(f"{ds.name}: {ds.task}, {sizes['train']}/{sizes['val']}/{sizes['test']} train/val/test rows; "
          f"{what}; {result.params:,} parameters; device {result.device}")
    print(f"stopped: {result.stopped_reason}{' (interrupted)' if interrupted else ''} after {result.epochs_run} "
          f"epochs, {best_epoch_text(result.best_epoch)}, {result.seconds:.1f} s training")
    from kamoe_viz.training.results import epoch_cap_notice

    notice = None if interrupted else epoch_cap_notice(result, run.config.train)
    if notice:
        print(f"note: {notice}")
    print("test:       " + "  ".join(f"{k} {m[k]:.4f}" for k in main if k in m))
    print("validation: " + "  ".join(f"{k} {m['val_' + k]:.4f}" for k in main if "val_" + k in m))
    if result.message:
        print(f"warning: {result.message}", file=sys.stderr)
    if run.run_id:
        print(f"saved as run {run.run_id}")
    if as_json:
        record = {k: _json_value(v) for k, v in m.items()}
        record.update(params=result.params, epochs=result.epochs_run, best_epoch=result.best_epoch,
                      stopped_reason=result.stopped_reason, seconds=round(result.seconds, 3),
                      total_seconds=round(total_seconds, 3), device=result.device, dataset=ds.name, task=ds.task,
                      kind=config.model.kind, gate=config.model.gate if config.model.kind == "moe" else None,
                      expert=config.model.expert, n_experts=config.model.n_experts, seed=config.train.seed,
                      message=result.message, run_id=run.run_id,
                      routing=config.model.routing if config.model.kind == "moe" else None)
        record.update({k: _json_value(v) for k, v in routing_report(run).items()})
        print(json.dumps(record))
