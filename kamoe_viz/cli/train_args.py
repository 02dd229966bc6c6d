"""`train`'s arguments and how they become a validated :class:`~kamoe_viz.config.RunConfig`; the routing and
budget options are shared with `compare`."""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

from kamoe_viz.cli import tracking
from kamoe_viz.config import (
    DEVICES,
    EXPERT_TYPES,
    GATE_ACTIVATIONS,
    GATE_FAMILIES,
    MODEL_KINDS,
    OBJECTIVES,
    ROUTINGS,
    DataConfig,
    ModelConfig,
    RunConfig,
    TrainConfig,
)
from kamoe_viz.errors import ValidationError
from kamoe_viz.nn.fast import FAST_ENV

# config field -> the flag that sets it, so a validation message names what the user typed
FLAGS = {
    "data.name": "--dataset",
    "data.options": "--option",
    "data.seed": "--data-seed",
    "data.csv_path": "--csv",
    "data.target": "--target",
    "data.features": "--features",
    "model.kind": "--kind",
    "model.gate": "--gate",
    "model.gate_activation": "--gate-activation",
    "model.top_k": "--top-k",
    "model.n_experts": "--experts",
    "model.expert": "--expert",
    "model.expert_hidden": "--hidden",
    "model.return_sequences": "--return-sequences",
    "train.epochs": "--epochs",
    "train.batch_size": "--batch-size",
    "train.lr": "--lr",
    "train.weight_decay": "--weight-decay",
    "train.early_stopping": "--patience",
    "train.max_grad_norm": "--max-grad-norm",
    "train.seed": "--seed",
    "train.device": "--device",
    "model.routing": "--routing",
    "model.capacity_factor": "--capacity-factor",
    "model.shared_experts": "--shared-experts",
    "model.bias_update_rate": "--bias-update-rate",
    "train.balance_loss": "--balance-loss",
    "train.z_loss": "--z-loss",
    "train.objective": "--objective",
    "train.gate_lr_scale": "--gate-lr-scale",
    "train.restarts": "--restarts",
    "train.restart_epochs": "--restart-epochs",
}
ROUTING_MODEL_FIELDS = ("routing", "capacity_factor", "shared_experts", "bias_update_rate")
ROUTING_TRAIN_FIELDS = ("balance_loss", "z_loss", "objective", "gate_lr_scale", "restarts", "restart_epochs")


def _defaults() -> tuple[ModelConfig, TrainConfig]:
    return ModelConfig(), TrainConfig()


def add_data_arguments(parser: argparse.ArgumentParser, *, split_help: str) -> None:
    """The data options of `train` and `compare`: the same names and meaning in both."""
    data = parser.add_argument_group("data")
    data.add_argument(
        "--dataset",
        default=None,
        metavar="NAME",
        help="built-in dataset (default: regimes); see `python -m kamoe_viz datasets`",
    )
    data.add_argument("--csv", default=None, metavar="PATH", help="train on your own CSV instead of --dataset")
    data.add_argument("--target", default=None, metavar="COLUMN", help="the column of --csv to predict")
    data.add_argument(
        "--features",
        default=None,
        metavar="A,B,...",
        help="feature columns of --csv (default: all other numeric columns)",
    )
    data.add_argument(
        "--option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="dataset option, repeatable (e.g. --option noise=0.2)",
    )
    data.add_argument("--data-seed", type=int, default=0, metavar="N", help=split_help)


def add_expert_arguments(group: argparse._ArgumentGroup) -> None:
    """The experts' options of `train` and `compare`."""
    model = ModelConfig()
    group.add_argument("--expert", choices=EXPERT_TYPES, default=model.expert)
    group.add_argument("--experts", type=int, default=model.n_experts, metavar="N", help="number of experts")
    group.add_argument(
        "--hidden",
        default=",".join(map(str, model.expert_hidden)),
        metavar="W[,W...]",
        help="expert layer widths (default %(default)s)",
    )
    group.add_argument("--return-sequences", action="store_true", help="LSTM/GRU experts predict every time step")


def add_optimiser_arguments(group: argparse._ArgumentGroup) -> None:
    """Batch, learning rate, weight decay, early stopping and clipping options of `train` and `compare`."""
    train = TrainConfig()
    group.add_argument("--batch-size", type=int, default=train.batch_size, metavar="N")
    group.add_argument("--lr", type=float, default=train.lr, metavar="X", help="learning rate (default %(default)g)")
    group.add_argument("--weight-decay", type=float, default=train.weight_decay, metavar="X")
    group.add_argument(
        "--patience",
        type=int,
        default=train.early_stopping,
        metavar="N",
        help="early-stopping patience in epochs, 0 = off (default %(default)s)",
    )
    group.add_argument(
        "--max-grad-norm",
        type=float,
        default=train.max_grad_norm,
        metavar="X",
        help="clip the gradient norm to X (0 = off)",
    )


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Every option of ``train``, in its groups (data, model, training, output)."""
    model, train = _defaults()
    add_data_arguments(p, split_help="seed of the train/val/test split")
    m = p.add_argument_group("model")
    m.add_argument(
        "--kind", choices=MODEL_KINDS, default=model.kind, help="moe (default) or standard (one expert, no gate)"
    )
    m.add_argument("--gate", choices=GATE_FAMILIES, default=model.gate)
    m.add_argument("--gate-activation", choices=GATE_ACTIVATIONS, default=model.gate_activation)
    t = p.add_argument_group("training")
    add_routing_arguments(m, t)
    add_expert_arguments(m)
    t.add_argument("--epochs", type=int, default=train.epochs, metavar="N")
    add_optimiser_arguments(t)
    t.add_argument("--seed", type=int, default=train.seed, metavar="N", help="seed of initialisation and shuffling")
    t.add_argument("--device", choices=DEVICES, default=train.device)
    t.add_argument(
        "--threads",
        type=int,
        default=None,
        metavar="N",
        help="CPU threads for torch (default: "
        "$KAMOE_THREADS, else 1, or up to 4 cores from batch 512 on: small batches train fastest on "
        "one thread)",
    )
    add_budget_arguments(t)
    t.add_argument(
        "--no-fast",
        action="store_true",
        help=f"plain PyTorch and autograd: no C kernel, closed-form gradients, fused gate or FastAdam (as "
        f"${FAST_ENV}=0 does; slower, for checking or debugging)",
    )
    t.add_argument(
        "--preset",
        default=None,
        metavar="NAME",
        help="start from a preset (see `python -m kamoe_viz presets`); flags you give still win",
    )
    o = p.add_argument_group("output")
    o.add_argument(
        "--json",
        action="store_true",
        help="print one JSON object of metrics and run facts on stdout (the summary goes to stderr)",
    )
    o.add_argument("--quiet", action="store_true", help="no progress bar")
    o.add_argument(
        "--snapshot-every",
        type=int,
        default=None,
        metavar="N",
        help="record a training timeline (gate weights, routing metrics, region maps) every N epochs, "
        "at most 200 snapshots; saved with --save and shown on the Gates, Splines and Experts pages",
    )
    o.add_argument("--save", action="store_true", help="store the run (see the Runs page) and print its id")
    o.add_argument(
        "--runs-dir",
        default=None,
        metavar="DIR",
        help="where --save stores runs (default: env KAMOE_RUNS_DIR or ./runs)",
    )
    tracking.add_options(p)


def add_budget_arguments(group: argparse._ArgumentGroup) -> None:
    """--max-params, --max-memory-mb: raise (or lower) the cost budget of one model (kamoe_viz/budget.py)."""
    from kamoe_viz import budget

    group.add_argument(
        "--max-params",
        type=int,
        default=None,
        metavar="N",
        help=f"largest model in parameters (default ${budget.ENV_MAX_PARAMS}, else {budget.DEFAULT_MAX_PARAMS:,})",
    )
    group.add_argument(
        "--max-memory-mb",
        type=int,
        default=None,
        metavar="MB",
        help=f"largest training-memory estimate (default ${budget.ENV_MAX_MEMORY_MB}, else "
        f"{budget.DEFAULT_MAX_MEMORY_MB:,})",
    )


def set_budget_limits(args: argparse.Namespace) -> None:
    """Copy --max-params / --max-memory-mb into the environment, where the library's budget reads them."""
    from kamoe_viz import budget

    for value, name, flag in (
        (getattr(args, "max_params", None), budget.ENV_MAX_PARAMS, "--max-params"),
        (getattr(args, "max_memory_mb", None), budget.ENV_MAX_MEMORY_MB, "--max-memory-mb"),
    ):
        if value is not None:
            if value < 1:
                raise ValidationError(flag, value, "must be a positive whole number")
            os.environ[name] = str(value)


# (section, field, metavar, help) of the routing options; the flag is FLAGS[section.field], type and default the field's
_ROUTING_OPTIONS = (
    ("model", "top_k", "K", "experts per row for topk, noisy_topk, sigmoid_bias (a K > 0 alone means topk)"),
    ("model", "capacity_factor", "C", "switch, expert_choice: capacity ceil(C * rows / experts) (default %(default)g)"),
    ("model", "shared_experts", "N", "N always-on experts beside the routed ones (DeepSeekMoE; default 0)"),
    (
        "model",
        "bias_update_rate",
        "U",
        "sigmoid_bias: b_i += U * sign(mean load - load_i) per step (default %(default)g)",
    ),
    ("train", "balance_loss", "A", "weight of the Switch balance loss A * E * sum f_i P_i (0 = off)"),
    ("train", "z_loss", "B", "weight of the router z-loss (0 = off)"),
    ("train", "gate_lr_scale", "X", "learning rate of the gate and router = lr * X (default 1)"),
    (
        "train",
        "restarts",
        "R",
        "try R initialisations for --restart-epochs epochs each and train the one with the "
        "lowest validation loss (default 1 = off)",
    ),
    ("train", "restart_epochs", "N", "epochs each restart trains before they are compared (default %(default)d)"),
)


def add_routing_arguments(model_group: argparse._ArgumentGroup, train_group: argparse._ArgumentGroup) -> None:
    """--routing, --top-k, --capacity-factor, --shared-experts, --bias-update-rate (model) and --balance-loss,
    --z-loss, --objective, --gate-lr-scale, --restarts, --restart-epochs (training); shared by train and compare."""
    model, train = _defaults()
    model_group.add_argument(
        "--routing",
        choices=ROUTINGS,
        default=model.routing,
        help="how gate logits become expert weights (default dense; the README's routers table defines each)",
    )
    train_group.add_argument(
        "--objective",
        choices=OBJECTIVES,
        default=train.objective,
        help="mse: the task loss of the mixed prediction; likelihood: the mixture likelihood "
        "(Jacobs et al. 1991), which rewards each row's best expert",
    )
    for section, field, metavar, text in _ROUTING_OPTIONS:
        group, defaults = (model_group, model) if section == "model" else (train_group, train)
        default = getattr(defaults, field)
        group.add_argument(FLAGS[f"{section}.{field}"], type=type(default), default=default, metavar=metavar, help=text)


def routing_fields(args: argparse.Namespace) -> tuple[dict[str, Any], dict[str, Any]]:
    """(ModelConfig fields, TrainConfig fields) of the routing arguments."""
    return (
        {name: getattr(args, name) for name in ROUTING_MODEL_FIELDS},
        {name: getattr(args, name) for name in ROUTING_TRAIN_FIELDS},
    )


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
        raise ValidationError("--hidden", text, "must be layer widths separated by commas, e.g. 100 or 64,32") from None
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
        data = DataConfig(
            name="csv",
            csv_path=str(args.csv),
            target=args.target,
            features=features,
            seed=args.data_seed,
            options=options,
        )
    else:
        if args.target or args.features:
            raise ValidationError(
                "--target" if args.target else "--features",
                args.target or args.features,
                "only applies together with --csv",
            )
        data = DataConfig(name=args.dataset or "regimes", options=options, seed=args.data_seed)
    model_routing, train_routing = routing_fields(args)
    model = ModelConfig(
        kind=args.kind,
        gate=args.gate,
        gate_activation=args.gate_activation,
        top_k=args.top_k,
        n_experts=args.experts,
        expert=args.expert,
        expert_hidden=_hidden(args.hidden),
        return_sequences=args.return_sequences,
        **model_routing,
    )
    train = TrainConfig(
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        weight_decay=args.weight_decay,
        early_stopping=args.patience,
        max_grad_norm=args.max_grad_norm,
        seed=args.seed,
        device=args.device,
        **train_routing,
    )
    return RunConfig(data=data, model=model, train=train).validate()


def with_preset(name: str, given: RunConfig) -> RunConfig:
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
