"""`compare` and `reproduce` subcommands.

    python -m kamoe_viz compare [--dataset NAME | --csv PATH --target COL] --gates linear,grn,grkan --seeds 5
                                [--out results.csv] [--jobs N] [model/training options as `train`]
    python -m kamoe_viz reproduce california [--full] [--seeds 5] [--jobs N] [--out-dir DIR]
    python -m kamoe_viz reproduce sequential [--datasets A,B] [--experts lstm,gru] [--seeds 5] [--jobs N]

Invalid input ends with exit status 2 and a one-line message on stderr naming the problem.
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from collections.abc import Callable
from typing import Any

import pandas as pd

from kamoe_viz.cli import tracking
from kamoe_viz.cli.sweep_args import (
    COMPARE_DEFAULT_EPOCHS,
    add_engine_options,
    add_run_options,
    config_from_args,
    int_list,
    seeds_arg,
)
from kamoe_viz.config import RunConfig
from kamoe_viz.errors import ValidationError

# ----- helpers ----------------------------------------------------------------------------------------------------
BAR_WIDTH = 20


def _bar(fraction: float) -> str:
    filled = round(BAR_WIDTH * min(1.0, max(0.0, fraction)))
    return "#" * filled + "." * (BAR_WIDTH - filled)


def _progress_printer(stream: Any = None) -> Callable[[Any], None]:
    stream = stream if stream is not None else sys.stderr  # read at call time (a default binds it at import)
    start = time.perf_counter()
    tty = hasattr(stream, "isatty") and stream.isatty()

    def show(p: Any) -> None:
        elapsed = time.perf_counter() - start
        head = f"[{_bar(p.fraction)}] {p.done:>3}/{p.total}"
        if p.row is not None or p.milestone:
            if tty:
                stream.write("\r\033[K")
            stream.write(f"{head} {p.message}  ({elapsed:.0f} s elapsed)\n")
        elif tty:
            stream.write(f"\r\033[K{head} {p.message}")
        stream.flush()

    return show


def _command_line(argv: list[str] | None) -> str:
    args = argv if argv is not None else sys.argv[1:]
    return "python -m kamoe_viz " + " ".join(shlex.quote(a) for a in args)


def _fmt_table(frame: pd.DataFrame, floats: str = "{:.4f}") -> str:
    shown = frame.copy()
    for col in shown.columns:
        if pd.api.types.is_float_dtype(shown[col]):
            shown[col] = shown[col].map(lambda v: "" if pd.isna(v) else floats.format(v))
    return shown.to_string(index=False)


# ----- compare -----------------------------------------------------------------------------------------------------
def cmd_compare(args: argparse.Namespace) -> int:
    from kamoe_viz import compare
    from kamoe_viz.training import configure_cpu_threads, tune_allocator

    if args.gates is not None and not [g for g in str(args.gates).split(",") if g.strip()]:
        raise ValidationError("--gates", args.gates, "must name at least one gate (linear, grn, grkan)")
    base = config_from_args(args)
    if args.tune:
        return _cmd_tune(args, base)
    if args.out:
        from kamoe_viz.compare.results_file import check_path

        check_path(args.out)  # before any run trains
    tracking.check(args)  # a bad --mlflow / --tensorboard fails before any run
    configure_cpu_threads()  # runs in this process (--jobs 1); workers set their own
    tune_allocator()
    result = compare.run(
        base,
        gates=args.gates,
        seeds=seeds_arg(args.seeds),
        include_standard=not args.no_standard,
        jobs=args.jobs,
        on_progress=None if args.quiet else _progress_printer(),
        vary_split=args.vary_split,
        engine=args.engine,
        address=args.address,
        batch=not args.no_batch,
        results_path=args.out,
        routings=args.routings,
    )
    tracking.log_compare(args, result)
    t = result.table
    split = "a new split per seed" if args.vary_split else f"fixed split (data seed {base.data.seed})"
    where = f"Ray ({args.address or 'a private local cluster'})" if args.engine == "ray" else f"{result.jobs} job(s)"
    resumed = result.extra.get("resumed", 0)
    print(
        f"\n{base.data.name}: {len(t)} runs, {split}, training seeds {result.seeds}, "
        f"{result.wall_seconds:.1f} s on {where}" + (f"; {resumed} taken from {args.out}" if resumed else "")
    )
    cols = [
        "variant",
        "seed",
        "test_metric",
        "epochs_run",
        "best_epoch",
        "train_seconds",
        "params",
        "stopped_reason",
        "gate_entropy",
        "regime_nmi",
        "min_load",
        "load_cv",
        "max_violation",
    ]
    print("\nRuns (" + result.metric_label + " on the test split):")
    print(_fmt_table(t[[c for c in cols if c in t.columns]]))
    summ = result.summary.merge(result.cost(), on="variant")
    print("\nPer variant:")
    print(_fmt_table(summ[["variant", "n", "mean", "std", "ci_low", "ci_high", "params", "train_seconds", "diverged"]]))
    if len(result.stats):
        print("\nPaired comparisons (by seed):")
        for line in result.stats["verdict"]:
            print(f"- {line}")
    for _, row in t[t["diverged"].astype(bool)].iterrows():
        print(f"! {row.variant} seed {row.seed} diverged: {row.message}")
    for _, row in t[t["stopped_reason"] == "error"].iterrows():
        print(f"! {row.variant} seed {row.seed} failed: {row.message}")
    if result.epoch_cap:
        print(f"\nnote: {result.epoch_cap}")
    if result.expert_matching:
        print(f"\n{result.expert_matching}")
    print(f"\nVerdict: {result.verdict}")
    if args.out:
        print(f"Wrote {len(t)} rows to {args.out}")
    return 0


def _cmd_tune(args: argparse.Namespace, base: RunConfig) -> int:
    """compare --tune: the grid of --tune-* values (and --gates when several) searched on Ray Tune with ASHA."""
    from kamoe_viz.compare.tuning import parse_values, tune_search

    space = {
        axis: parse_values(axis, getattr(args, f"tune_{axis}"))
        for axis in ("lr", "width", "grid")
        if getattr(args, f"tune_{axis}")
    }
    gates = [g.strip() for g in str(args.gates or "").split(",") if g.strip()]
    if len(gates) > 1:
        space["gate"] = gates
    elif gates:
        base.model.gate = gates[0]
    seeds = seeds_arg(args.seeds)
    res = tune_search(
        base,
        space,
        seeds=seeds,
        address=args.address,
        cpus=args.jobs if args.jobs > 1 else None,
        grace_period=args.tune_grace,
    )
    print(
        f"\n{base.data.name}: {len(res.table)} trials x {res.table['seeds'].iloc[0]} seeds on Ray Tune "
        f"(ASHA, grace {args.tune_grace} epochs), {res.wall_seconds:.1f} s"
    )
    print(
        f"Trials, best first (val_loss: mean over the seeds; test_metric: mean {res.metric_label} on the test "
        "split, for trials that ran to the end):"
    )
    print(_fmt_table(res.table))
    print(f"\nBest: {', '.join(f'{k}={v}' for k, v in res.best.items())}")
    if args.out:
        res.table.to_csv(args.out, index=False)
        print(f"Wrote {len(res.table)} rows to {args.out}")
    return 0


# ----- reproduce ---------------------------------------------------------------------------------------------------
def cmd_reproduce(args: argparse.Namespace, argv: list[str] | None = None) -> int:
    from kamoe_viz.compare import reproduce as rp
    from kamoe_viz.compare.results_file import check_folder
    from kamoe_viz.training import configure_cpu_threads, tune_allocator

    configure_cpu_threads()  # runs in this process (--jobs 1); workers set their own
    tune_allocator()
    progress = None if args.quiet else _progress_printer()
    out_dir = check_folder(args.out_dir)  # a bad folder fails now, not after every run has trained
    sweep = dict(
        engine=args.engine,
        address=args.address,
        batch=not args.no_batch,
        results_path=str(out_dir / f"{args.protocol}_runs.csv"),
    )
    if args.protocol == "california":
        rep = rp.reproduce_california(
            full=args.full,
            seeds=seeds_arg(args.seeds),
            jobs=args.jobs,
            on_progress=progress,
            **sweep,
            experts=[e.strip() for e in args.experts.split(",")] if args.experts else ("mlp", "kan"),
            layers=int_list(args.layers, "--layers") if args.layers else None,
            widths=int_list(args.widths, "--widths") if args.widths else None,
            max_epochs=args.max_epochs,
        )
    else:
        rep = rp.reproduce_sequential(
            datasets=[d.strip() for d in args.datasets.split(",")] if args.datasets else None,
            experts=[e.strip() for e in args.experts.split(",")] if args.experts else ("lstm", "gru"),
            seeds=seeds_arg(args.seeds),
            jobs=args.jobs,
            hidden=args.hidden,
            max_epochs=args.max_epochs or 100,
            on_progress=progress,
            **sweep,
        )
    text = rep.markdown(_command_line(argv))
    (out_dir / f"{rep.name}.md").write_text(text, encoding="utf-8")
    print(text)
    print(f"Wrote {out_dir / (rep.name + '.md')} and {out_dir / (rep.name + '_runs.csv')}")
    return 0


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    """Register `compare` and `reproduce` (each sets ``func``; `reproduce` takes ``(args, argv)``)."""
    p = subparsers.add_parser(
        "compare",
        help="train gates side by side over several seeds and test the differences",
        description="Train the same data, split, experts and training settings with each gate (and the plain "
        "single-expert model) for several training seeds; print the runs, per-gate summary and paired "
        "statistics. The data split stays fixed; the seed varies initialisation and shuffling.",
    )
    p.add_argument("--gates", default="linear,grn,grkan", help="comma-separated gates (default: all three)")
    p.add_argument(
        "--routings",
        default=None,
        metavar="A,B",
        help="also vary the router: each gate runs with each of these (e.g. dense,switch,sigmoid_bias; "
        "variants named gate/router); default: the --routing of every run",
    )
    p.add_argument("--seeds", default="5", help="number of seeds (N -> 0..N-1) or a list like 0,3,7 (default 5)")
    p.add_argument("--no-standard", action="store_true", help="leave out the single-expert baseline")
    p.add_argument("--vary-split", action="store_true", help="also draw a new data split for each seed")
    p.add_argument("--jobs", type=int, default=1, help="parallel worker processes (default 1)")
    p.add_argument(
        "--out",
        default=None,
        metavar="CSV",
        help="write one row per gate and seed to this CSV as each run finishes; running the same "
        "command again skips the runs already in it (resume)",
    )
    add_engine_options(p)
    tg = p.add_argument_group("search (Ray Tune)")
    tg.add_argument(
        "--tune",
        action="store_true",
        help="grid search on Ray Tune with ASHA early stopping instead of a comparison: each trial "
        "is one setting x the --seeds, trained batched (needs ray; --address as --engine ray)",
    )
    tg.add_argument("--tune-lr", default=None, metavar="A,B", help="learning rates to search, e.g. 1e-3,1e-2")
    tg.add_argument("--tune-width", default=None, metavar="A,B", help="expert widths, e.g. 16,32 (32x32: 2 layers)")
    tg.add_argument("--tune-grid", default=None, metavar="A,B", help="KAN grid sizes, e.g. 3,5")
    tg.add_argument(
        "--tune-grace",
        type=int,
        default=2,
        metavar="N",
        help="epochs every trial runs before ASHA may stop it (default %(default)s)",
    )
    p.add_argument("--quiet", action="store_true", help="no progress lines")
    add_run_options(p, default_epochs=COMPARE_DEFAULT_EPOCHS)
    tracking.add_options(p)
    p.set_defaults(func=cmd_compare)

    r = subparsers.add_parser(
        "reproduce",
        help="run the paper's experiments (california, sequential) and write a markdown report",
        description="california: MLP and KAN experts; standard vs MoE (GRN gate) vs KAMoE (GRKAN gate); "
        "Adam 1e-3, batch 128, early stopping; 5 seeds; reduced grid by default, the reference's 32 "
        "configurations with --full. sequential: LSTM and GRU experts on the sequence datasets.",
    )
    r.add_argument("protocol", choices=["california", "sequential"])
    r.add_argument("--full", action="store_true", help="california: all 4 depths x 8 widths (slow: hours)")
    r.add_argument("--seeds", default="5", help="number of seeds or a list (default 5)")
    r.add_argument("--jobs", type=int, default=1, help="parallel worker processes (default 1)")
    r.add_argument(
        "--out-dir",
        default="results",
        help="where to write <protocol>.md and <protocol>_runs.csv "
        "(rows are written as runs finish; the same command again resumes from that CSV)",
    )
    add_engine_options(r)
    r.add_argument("--experts", default=None, help="california: mlp,kan (default); sequential: lstm,gru (default)")
    r.add_argument("--layers", default=None, help="california: expert depths, e.g. 1,2")
    r.add_argument("--widths", default=None, help="california: expert widths, e.g. 10,50")
    r.add_argument("--max-epochs", type=int, default=None, help="epoch cap (california default 200, full 1000)")
    r.add_argument("--datasets", default=None, help="sequential: dataset names (default: every sequence dataset)")
    r.add_argument("--hidden", type=int, default=32, help="sequential: recurrent expert width (default 32)")
    r.add_argument("--quiet", action="store_true", help="no progress lines")
    r.set_defaults(func=cmd_reproduce)


def main(argv: list[str] | None = None) -> int:
    """Same as ``python -m kamoe_viz`` (the package's dispatcher reports errors in one line, exit status 2)."""
    from kamoe_viz.cli import main as package_main

    return package_main(argv)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
