"""Training speed: our KAMoE (PyTorch, kamoe_viz.training.fit) against the original (PyPI ``kamoe`` 0.1.8 on
Keras 3 + JAX) on the reference California configuration, in the same run.

Configuration (both sides): 16,512 x 8 standardised California Housing rows; 3 experts Dense(100, relu); gate
Dense(100, relu) -> GRKAN(3 experts) with sigmoid; head Dense(1); Adam 1e-3; MSE; shuffled mini-batches.
Each (side, batch size, repetition) runs in its own subprocess, so peak memory (RSS) is per side; the sides
alternate A/B, B/A over repetitions and medians are reported. The reference is installed on first use into
benchmarks/.envs/reference (pip, from PyPI); its code is never copied here.

    python benchmarks/bench_train.py                      # batch 32, 128, 1024; 5 epochs; 3 repetitions
    python benchmarks/bench_train.py --quick              # batch 128, 3 epochs, 1 repetition
    python benchmarks/bench_train.py --epochs 8 --reps 5 --batch-sizes 128

Per-epoch time is the median over epochs 2..N (epoch 1 carries start-up: compilation for the reference, lazy
initialisation for us); "first epoch" is the time from the end of the imports to the end of epoch 1 (data, model
build, compile where there is one, first epoch). Our epochs also compute the validation loss and gate weights
(what the app shows live); the reference's do not. The last line printed is the batch-128 throughput ratio.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
from _envs import ensure_env  # noqa: E402

DEFAULT_CSV = ROOT.parent / "shared" / "datasets" / "california_housing.csv"
RESULTS = HERE / "results"
TRAIN_ROWS = 16_512


def california_npz(csv: Path) -> Path:
    """Standardised train (16,512 rows) and validation (the other 4,128) arrays in one .npz, made once."""
    import numpy as np
    import pandas as pd

    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / "california_bench.npz"
    if out.exists() and out.stat().st_mtime >= csv.stat().st_mtime:
        return out
    frame = pd.read_csv(csv)
    target = "MedHouseVal"
    if target not in frame.columns or frame.shape[1] != 9:
        raise SystemExit(f"{csv}: expected sklearn's California Housing columns (8 features + {target})")
    X = frame.drop(columns=[target]).to_numpy(np.float32)
    y = frame[target].to_numpy(np.float32)[:, None]
    order = np.random.default_rng(0).permutation(len(X))
    train, val = order[:TRAIN_ROWS], order[TRAIN_ROWS:]
    x_mean, x_std = X[train].mean(0), X[train].std(0)
    y_mean, y_std = y[train].mean(), y[train].std()
    np.savez(
        out,
        X=(X[train] - x_mean) / x_std,
        y=(y[train] - y_mean) / y_std,
        X_val=(X[val] - x_mean) / x_std,
        y_val=(y[val] - y_mean) / y_std,
        x_mean=x_mean,
        x_std=x_std,
        y_mean=y_mean,
        y_std=y_std,
    )
    return out


def run_side(
    side: str,
    python: Path,
    data: Path,
    batch: int,
    epochs: int,
    seed: int,
    device: str,
    threads: int = 0,
    path: str = "fit",
) -> dict:
    script = HERE / ("_ours_train.py" if side == "ours" else "_reference_train.py")
    env = dict(os.environ, KERAS_BACKEND="jax", TF_CPP_MIN_LOG_LEVEL="3", PYTHONUNBUFFERED="1")
    if side == "ours" and threads > 0:
        env["KAMOE_THREADS"] = str(threads)
    env["KAMOE_BENCH_PATH"] = path
    args = [str(python), str(script), str(data), str(batch), str(epochs), str(seed)]
    if side == "ours":
        args.append(device)
    proc = subprocess.run(args, capture_output=True, text=True, env=env, cwd=ROOT, timeout=3600)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    if proc.returncode != 0 or not lines:
        raise SystemExit(f"{side} run (batch {batch}) failed with exit code {proc.returncode}:\n{proc.stderr[-3000:]}")
    return json.loads(lines[-1])


def summarise(runs: list[dict]) -> dict:
    steady = [statistics.median(r["epoch_seconds"][1:] or r["epoch_seconds"]) for r in runs]
    epoch = statistics.median(steady)
    return {
        "epoch_seconds": epoch,
        "samples_per_second": runs[0]["rows"] / epoch,
        "first_epoch_end_seconds": statistics.median(r["first_epoch_end_seconds"] for r in runs),
        "import_seconds": statistics.median(r["import_seconds"] for r in runs),
        "peak_rss_mb": statistics.median(r["peak_rss_mb"] for r in runs),
        "final_loss": statistics.median(r["final_loss"] for r in runs),
        "params": runs[0]["params"],
        "reps": len(runs),
        "per_rep_epoch_seconds": steady,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=5, help="epochs per run (default 5; >= 2)")
    parser.add_argument("--reps", type=int, default=3, help="repetitions per side and batch size (default 3)")
    parser.add_argument("--batch-sizes", default="32,128,1024", help="comma-separated (default 32,128,1024)")
    parser.add_argument("--quick", action="store_true", help="batch 128 only, 3 epochs, 1 repetition")
    parser.add_argument("--device", default="cpu", help="our device: cpu (default), cuda, auto")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--csv",
        type=Path,
        default=Path(os.environ.get("KAMOE_CALIFORNIA_CSV", DEFAULT_CSV)),
        help="California Housing CSV with sklearn's column names",
    )
    parser.add_argument("--sides", default="ours,reference", help="which sides to run (default both)")
    parser.add_argument(
        "--reference-python",
        type=Path,
        default=None,
        metavar="PYTHON",
        help="a Python that already has kamoe, keras and jax (e.g. on a machine without internet); "
        "default: benchmarks/.envs/reference, made on first use",
    )
    parser.add_argument(
        "--ours-path",
        choices=("fit", "minimal"),
        default="fit",
        help="fit: kamoe_viz.training.fit (default); minimal: benchmarks/_minimal_fit.py (same model, "
        "FastAdam, no per-step sync) to show what the loop itself costs",
    )
    parser.add_argument(
        "--ours-threads",
        type=int,
        default=0,
        help="torch CPU threads for our side (default 0: what the CLI uses: KAMOE_THREADS, else 1, "
        "or up to 4 cores from batch 512 on)",
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.epochs, args.reps, args.batch_sizes = 3, 1, "128"
    try:
        batches = [int(b) for b in args.batch_sizes.split(",") if b.strip()]
    except ValueError:
        parser.error(f"--batch-sizes: got {args.batch_sizes!r}; must be comma-separated integers like 32,128")
    if args.epochs < 2 or args.reps < 1 or not batches or min(batches) < 1:
        parser.error("--epochs must be >= 2, --reps >= 1 and batch sizes positive")
    if not args.csv.exists():
        parser.error(f"--csv: {args.csv} does not exist; point it (or KAMOE_CALIFORNIA_CSV) at the California CSV")
    sides = [s.strip() for s in args.sides.split(",") if s.strip()]
    pythons = {"ours": Path(sys.executable)}
    if "reference" in sides:
        pythons["reference"] = args.reference_python or ensure_env("reference")
    data = california_npz(args.csv)
    print(
        f"# bench_train  {time.strftime('%Y-%m-%d %H:%M')}  cpus={os.cpu_count()}  epochs={args.epochs}  "
        f"reps={args.reps}  batches={batches}  device={args.device}  "
        f"ours_threads={args.ours_threads or 'kamoe_viz default'}  ours_path={args.ours_path}  "
        f"load={os.getloadavg()[0]:.1f}",
        flush=True,
    )
    runs: dict[tuple[str, int], list[dict]] = {}
    for rep in range(args.reps):
        for i, batch in enumerate(batches):
            order = sides if (rep + i) % 2 == 0 else sides[::-1]
            for side in order:
                result = run_side(
                    side,
                    pythons[side],
                    data,
                    batch,
                    args.epochs,
                    args.seed + rep,
                    args.device,
                    args.ours_threads,
                    args.ours_path,
                )
                runs.setdefault((side, batch), []).append(result)
                epochs_txt = " ".join(f"{s:.3f}" for s in result["epoch_seconds"])
                print(
                    f"rep {rep + 1} batch {batch:5d} {side:9s} on {result.get('device', '?')} "
                    f"epochs [{epochs_txt}] s  first-epoch-end "
                    f"{result['first_epoch_end_seconds']:.2f} s  peak {result['peak_rss_mb']:.0f} MB  "
                    f"loss {result['final_loss']:.4f}",
                    flush=True,
                )
    summary = {f"{side}/{batch}": summarise(r) for (side, batch), r in runs.items()}
    print("\nbatch  side       epoch_s  samples/s  first_epoch_s  import_s  peak_MB  final_loss")
    for batch in batches:
        for side in sides:
            s = summary[f"{side}/{batch}"]
            print(
                f"{batch:5d}  {side:9s} {s['epoch_seconds']:8.3f} {s['samples_per_second']:10.0f} "
                f"{s['first_epoch_end_seconds']:14.2f} {s['import_seconds']:9.2f} {s['peak_rss_mb']:8.0f} "
                f"{s['final_loss']:11.4f}"
            )
    ratios = {}
    if {"ours", "reference"} <= set(sides):
        print("\nratios ours/reference (throughput: higher is better; time and memory: lower is better)")
        for batch in batches:
            o, r = summary[f"ours/{batch}"], summary[f"reference/{batch}"]
            ratios[batch] = {
                "throughput": o["samples_per_second"] / r["samples_per_second"],
                "first_epoch": o["first_epoch_end_seconds"] / r["first_epoch_end_seconds"],
                "peak_rss": o["peak_rss_mb"] / r["peak_rss_mb"],
            }
            q = ratios[batch]
            print(
                f"batch {batch:5d}: throughput x{q['throughput']:.2f}  first-epoch time x{q['first_epoch']:.2f}"
                f"  peak memory x{q['peak_rss']:.2f}"
            )
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"bench_train-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.write_text(
        json.dumps(
            {
                "args": {k: str(v) for k, v in vars(args).items()},
                "summary": summary,
                "ratios": {str(k): v for k, v in ratios.items()},
                "runs": {f"{s}/{b}": r for (s, b), r in runs.items()},
            },
            indent=1,
        )
    )
    print(f"\n(details: {out.relative_to(ROOT)})")
    print(f"(load average at the end: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cpus)")
    if 128 in ratios:
        print(f"batch-128 throughput ratio ours/reference: {ratios[128]['throughput']:.2f}")
    else:
        print("batch-128 throughput ratio ours/reference: not measured (add 128 to --batch-sizes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
