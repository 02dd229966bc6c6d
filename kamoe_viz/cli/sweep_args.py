"""The options `compare` and `reproduce` share: dataset, model and training options named as `train` names them,
the engine options, and the parsers of seed and integer lists."""

from __future__ import annotations

import argparse

from kamoe_viz.config import DEVICES, GATE_ACTIVATIONS, ModelConfig, RunConfig, TrainConfig
from kamoe_viz.errors import ValidationError

COMPARE_DEFAULT_EPOCHS = TrainConfig().epochs  # one set of defaults: train, compare and the pages share config's


# ----- run options: the same names as `train`, parsed by train's own config_from_args ---------------------------------
def int_list(text: str, field: str) -> list[int]:
    parts = [p.strip() for p in str(text).split(",") if p.strip()]
    try:
        return [int(p) for p in parts]
    except ValueError:
        raise ValidationError(field, text, "must be integers separated by commas, e.g. 1,2") from None


def add_run_options(parser: argparse.ArgumentParser, *, default_epochs: int) -> None:
    """Dataset, model and training options with the names and meaning of `python -m kamoe_viz train`.

    The gate and the model kind are what a comparison varies, so `--gate`/`--kind` are not offered; `--seed` is the
    first training seed. Parsing goes through :func:`kamoe_viz.cli.train_args.config_from_args`, so both commands read
    their options the same way.
    """
    from kamoe_viz.cli.train_args import (
        add_data_arguments,
        add_expert_arguments,
        add_optimiser_arguments,
        add_routing_arguments,
    )

    model = ModelConfig()
    add_data_arguments(
        parser, split_help="seed of the train/val/test split (the same for every run unless --vary-split)"
    )
    m = parser.add_argument_group("model")
    add_expert_arguments(m)
    m.add_argument("--gate-activation", choices=GATE_ACTIVATIONS, default=model.gate_activation)
    t = parser.add_argument_group("training")
    t.add_argument(
        "--epochs", type=int, default=default_epochs, metavar="N", help="at most N epochs per run (default %(default)s)"
    )
    add_optimiser_arguments(t)
    t.add_argument("--seed", type=int, default=0, metavar="N", help="first training seed (default 0)")
    t.add_argument("--device", choices=DEVICES, default="cpu", help="default cpu (runs are small and parallel)")
    add_routing_arguments(m, t)
    parser.set_defaults(kind="moe", gate="grkan")


def config_from_args(args: argparse.Namespace) -> RunConfig:
    """The base RunConfig of a comparison (validated), read exactly as `train` reads it."""
    from kamoe_viz.cli.train_args import config_from_args as train_config

    return train_config(args)


def seeds_arg(text: str) -> int | list[int]:
    """'5' -> 5 seeds (0..4); '0,3,7' -> those seeds."""
    values = int_list(text, "--seeds")
    if len(values) == 1 and "," not in str(text):
        return values[0]
    return values


def add_engine_options(parser: argparse.ArgumentParser) -> None:
    from kamoe_viz.compare.engines import ENGINES

    parser.add_argument(
        "--engine",
        choices=ENGINES,
        default="local",
        help="local: this process or --jobs processes; ray: a Ray cluster (default %(default)s)",
    )
    parser.add_argument(
        "--address",
        default=None,
        metavar="HOST:PORT",
        help="--engine ray: the head node to join, or 'auto' for the one running here (default: "
        "a private cluster of --jobs CPUs, all cores when --jobs is 1, stopped at the end)",
    )
    parser.add_argument(
        "--no-batch",
        action="store_true",
        help="train every seed on its own (default: the seeds of one configuration together as "
        "one batched model where supported)",
    )
