"""Per-epoch training time of each router against dense routing, on bench_train.py's California configuration.

Configuration: 16,512 x 8 standardised California Housing rows (bench_train.py's split); the reference model
(3 experts Dense(100, relu), gate Dense(100, relu) -> GRKAN, head Dense(1)); Adam 1e-3; batch 128;
``kamoe_viz.training.Trainer`` as the app and CLI use it (validation pass included). Only the routing setting
changes between variants. Every router and the balance/z losses train on the closed-form gradient path
(kamoe_viz.nn.fast.direct_grad, noisy_topk's noise layer included), shared experts and
the likelihood objective too. Two ratios are printed: against dense as it trains by default, and
against dense forced onto autograd (KAMOE_DIRECT_GRADIENTS=0). "dense (plain)" is dense with every fast path off
(KAMOE_FAST=0: no C kernel, autograd, torch.optim.Adam).

    python benchmarks/bench_routing.py                 # 4 epochs, 3 repetitions, every router
    python benchmarks/bench_routing.py --quick         # 3 epochs, 1 repetition
    python benchmarks/bench_routing.py --routers switch,sigmoid_bias --reps 5

Per-epoch time is this process's CPU time (``time.process_time``; ``--wall`` for wall-clock time), the median over
epochs 2..N, then the median over repetitions; variants alternate within each
repetition (in a rotated order) so drift in machine load spreads over all of them. Target: ratio <= 1.15.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(1, str(HERE))
from bench_train import DEFAULT_CSV, california_npz  # noqa: E402

TARGET_RATIO = 1.15
# CPU time of this process (torch runs on one thread at batch 128): on a shared machine it moves far less with the
# load than wall time does; --wall measures wall-clock time instead
CLOCK = time.process_time
# variant name -> (model overrides, train overrides); "dense" is the reference default
VARIANTS: dict[str, tuple[dict, dict]] = {
    "dense": ({}, {}),
    "topk": ({"routing": "topk", "top_k": 1, "gate_activation": "softmax"}, {}),
    "noisy_topk": ({"routing": "noisy_topk", "top_k": 2}, {}),
    "switch": ({"routing": "switch"}, {}),
    "expert_choice": ({"routing": "expert_choice"}, {}),
    "sigmoid_bias": ({"routing": "sigmoid_bias", "top_k": 1}, {}),
    "relu": ({"routing": "relu"}, {}),
    "shared_experts": ({"shared_experts": 1}, {}),
    "balance+z_loss": ({}, {"balance_loss": 0.01, "z_loss": 0.001}),
    "likelihood": ({}, {"objective": "likelihood", "gate_lr_scale": 5.0}),
}


def california_dataset(csv: Path):
    import numpy as np

    from kamoe_viz.data.base import Dataset

    data = np.load(california_npz(csv))
    return Dataset(
        name="california",
        task="regression",
        feature_names=[f"x{i}" for i in range(data["X"].shape[1])],
        target_name="MedHouseVal",
        X_train=data["X"],
        y_train=data["y"],
        X_val=data["X_val"],
        y_val=data["y_val"],
        X_test=data["X_val"],
        y_test=data["y_val"],
        x_mean=data["x_mean"],
        x_std=data["x_std"],
        y_mean=float(data["y_mean"]),
        y_std=float(data["y_std"]),
    )


def epoch_seconds(
    dataset, model_over: dict, train_over: dict, epochs: int, batch: int, seed: int, switch: str | None = None
) -> tuple[float, str]:
    """Median seconds of epochs 2..N, and the gradient path the trainer chose; ``switch``: an environment variable
    set to "0" for this run (KAMOE_DIRECT_GRADIENTS: autograd; KAMOE_FAST: every fast path off)."""
    import torch

    from kamoe_viz.config import ModelConfig, TrainConfig
    from kamoe_viz.nn import build_model
    from kamoe_viz.training import Trainer

    SWITCH_ENV = switch or "KAMOE_BENCH_UNUSED"
    previous = os.environ.get(SWITCH_ENV)
    if switch:
        os.environ[SWITCH_ENV] = "0"
    try:
        torch.manual_seed(seed)
        model = build_model(ModelConfig(**model_over), dataset)
        trainer = Trainer(
            model,
            dataset,
            TrainConfig(epochs=epochs, batch_size=batch, seed=seed, device="cpu", early_stopping=0, **train_over),
        )
        times = []
        for _ in range(epochs):
            started = CLOCK()
            trainer.run_epochs(1)
            times.append(CLOCK() - started)
        return statistics.median(times[1:] or times), trainer.gradient_path
    finally:
        if previous is None:
            os.environ.pop(SWITCH_ENV, None)
        else:
            os.environ[SWITCH_ENV] = previous


def torch_threads() -> int:
    import torch

    return torch.get_num_threads()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=4, help="epochs per run (default 4; >= 2)")
    parser.add_argument("--reps", type=int, default=3, help="repetitions (default 3)")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--routers", default=",".join(VARIANTS), help="comma-separated variants (default all)")
    parser.add_argument("--quick", action="store_true", help="3 epochs, 1 repetition")
    parser.add_argument("--wall", action="store_true", help="wall-clock time instead of this process's CPU time")
    parser.add_argument("--csv", type=Path, default=Path(os.environ.get("KAMOE_CALIFORNIA_CSV", DEFAULT_CSV)))
    args = parser.parse_args(argv)
    if args.quick:
        args.epochs, args.reps = 3, 1
    global CLOCK
    if args.wall:
        CLOCK = time.perf_counter
    names = [n.strip() for n in args.routers.split(",") if n.strip()]
    unknown = [n for n in names if n not in VARIANTS]
    if unknown or args.epochs < 2 or args.reps < 1:
        parser.error(f"variants must be among {', '.join(VARIANTS)}; --epochs >= 2; --reps >= 1")
    if not args.csv.exists():
        parser.error(f"--csv: {args.csv} does not exist; point it (or KAMOE_CALIFORNIA_CSV) at the California CSV")
    from kamoe_viz.training import configure_cpu_threads

    configure_cpu_threads(batch_size=args.batch_size)
    dataset = california_dataset(args.csv)
    from kamoe_viz.nn.fast import FAST_ENV
    from kamoe_viz.nn.fast.direct_grad import SWITCH_ENV

    switches = {"dense (autograd)": SWITCH_ENV, "dense (plain)": FAST_ENV}  # dense with a switch at 0
    runs = ["dense", *switches] + [n for n in names if n != "dense"]
    print(
        f"# bench_routing  {time.strftime('%Y-%m-%d %H:%M')}  cpus={os.cpu_count()}  epochs={args.epochs}  "
        f"reps={args.reps}  batch={args.batch_size}  clock={'wall' if args.wall else 'process CPU'}  "
        f"threads={torch_threads()}  load={os.getloadavg()[0]:.1f}",
        flush=True,
    )
    seconds: dict[str, list[float]] = {r: [] for r in runs}
    paths: dict[str, str] = {}
    for rep in range(args.reps):
        order = runs[rep % len(runs) :] + runs[: rep % len(runs)]
        for run in order:
            name = "dense" if run in switches else run
            model_over, train_over = VARIANTS[name]
            value, paths[run] = epoch_seconds(
                dataset, model_over, train_over, args.epochs, args.batch_size, rep, switch=switches.get(run)
            )
            seconds[run].append(value)
            print(f"rep {rep + 1} {run:18s} {value:.3f} s/epoch ({paths[run]})", flush=True)
    median = {r: statistics.median(v) for r, v in seconds.items()}
    print(f"\nvariant             s/epoch  path      vs dense  vs dense (autograd)   (target <= {TARGET_RATIO})")
    for run in runs:
        ratio, ratio_auto = median[run] / median["dense"], median[run] / median["dense (autograd)"]
        print(f"{run:18s} {median[run]:8.3f}  {paths[run]:8s}  x{ratio:6.2f}   x{ratio_auto:6.2f}")
    print(f"(load average at the end: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cpus)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
