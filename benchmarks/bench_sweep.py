"""Sweep throughput: the default `compare` configuration (3 gates x S seeds, default dataset and settings) trained
batched (the seeds of each gate as one stacked model) vs one by one, S = 5 and 20, with 1 and 2 torch threads; and
the Ray overhead: the same 60-run sweep through a private local Ray cluster vs the local process pool.

    python benchmarks/bench_sweep.py               # S = 5, 20; threads 1, 2; 2 repetitions; the Ray comparison
    python benchmarks/bench_sweep.py --quick       # S = 5, 1 thread, 1 repetition, 10 epochs, no Ray
    python benchmarks/bench_sweep.py --seeds 5 --threads 1 --reps 3 --no-ray

Every measurement runs in its own subprocess (fresh torch, fixed thread count); the modes alternate A/B, B/A over
repetitions and medians are reported. Runs per minute = runs / wall time of the whole sweep (data loading and the
final evaluation of every run included). CPU seconds are reported too: on a shared machine they are steadier than
wall time. The last line printed is the batched/one-by-one runs-per-minute ratio at S = 5.
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

ROOT = Path(__file__).resolve().parents[1]
GATES = "linear,grn,grkan"


# The configuration the README's figures were measured on (compare's defaults then; they are Train's now).
MEASURED = ["--hidden", "32", "--epochs", "30", "--patience", "10"]


def _base_config(epochs: int | None):
    """The measured configuration (:data:`MEASURED`), read by `compare`'s own parser."""
    from kamoe_viz.cli import build_parser

    argv = ["compare", *MEASURED] + (["--epochs", str(epochs)] if epochs else [])
    return build_parser().parse_args(argv)


def child(spec: dict) -> dict:
    """One measurement, in this (fresh) process."""
    os.environ["KAMOE_THREADS"] = str(spec["threads"])
    sys.path.insert(0, str(ROOT))
    from kamoe_viz import compare
    from kamoe_viz.cli.sweep_args import config_from_args
    from kamoe_viz.training import configure_cpu_threads, tune_allocator

    configure_cpu_threads()
    tune_allocator()
    args = _base_config(spec.get("epochs"))
    base = config_from_args(args)
    started, cpu = time.perf_counter(), time.process_time()
    res = compare.run(
        base,
        gates=GATES,
        seeds=spec["seeds"],
        include_standard=False,
        jobs=spec.get("jobs", 1),
        batch=spec["batch"],
        engine=spec.get("engine", "local"),
    )
    wall = time.perf_counter() - started
    t = res.table
    return {
        "wall": wall,
        "cpu": time.process_time() - cpu,
        "runs": len(t),
        "errors": int((t.stopped_reason == "error").sum()),
        "mean_test": float(t.test_metric.mean()),
        "epochs": float(t.epochs_run.mean()),
    }


def measure(spec: dict) -> dict:
    cmd = [sys.executable, __file__, "--child", json.dumps(spec)]
    out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=3600)
    if out.returncode != 0:
        raise SystemExit(f"child failed: {spec}\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def median_of(rows: list[dict], key: str) -> float:
    return statistics.median(r[key] for r in rows)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", default="5,20", help="seed counts S (default 5,20)")
    ap.add_argument("--threads", default="1,2", help="torch threads per process (default 1,2)")
    ap.add_argument("--reps", type=int, default=2)
    ap.add_argument("--epochs", type=int, default=None, help="epoch cap (default: 30, as measured)")
    ap.add_argument("--no-ray", action="store_true", help="skip the Ray vs local pool comparison")
    ap.add_argument("--ray-seeds", type=int, default=20, help="seeds of the Ray sweep (3 gates x 20 = 60 runs)")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        print(json.dumps(child(json.loads(a.child))))
        return
    if a.quick:
        a.seeds, a.threads, a.reps, a.epochs, a.no_ray = "5", "1", 1, a.epochs or 10, True
    seeds = [int(s) for s in a.seeds.split(",")]
    threads = [int(t) for t in a.threads.split(",")]
    print(
        f"Measured configuration {' '.join(MEASURED)}, gates {GATES}, epochs {a.epochs or 30}; "
        f"{os.cpu_count()} CPUs visible; medians of {a.reps} repetition(s)\n"
    )
    print(f"{'S':>3} {'threads':>7} {'mode':>11} {'runs':>5} {'wall s':>8} {'cpu s':>8} {'runs/min':>9} {'mean R2':>8}")
    ratios: dict[tuple[int, int], float] = {}
    for S in seeds:
        for t in threads:
            results: dict[bool, list[dict]] = {True: [], False: []}
            for rep in range(a.reps):
                order = (True, False) if rep % 2 == 0 else (False, True)
                for batch in order:
                    results[batch].append(measure({"seeds": S, "threads": t, "batch": batch, "epochs": a.epochs}))
            rpm = {}
            for batch in (False, True):
                rows = results[batch]
                wall, cpu = median_of(rows, "wall"), median_of(rows, "cpu")
                rpm[batch] = rows[0]["runs"] / wall * 60
                print(
                    f"{S:>3} {t:>7} {'batched' if batch else 'one-by-one':>11} {rows[0]['runs']:>5} {wall:>8.2f} "
                    f"{cpu:>8.2f} {rpm[batch]:>9.1f} {median_of(rows, 'mean_test'):>8.4f}"
                )
            ratios[(S, t)] = rpm[True] / rpm[False]
            print(f"    batched/one-by-one at S={S}, {t} thread(s): x{ratios[(S, t)]:.2f} runs per minute")
    if not a.no_ray:
        runs = 3 * a.ray_seeds
        print(f"\nRay overhead: {runs} runs one by one (no batching), 2 workers, 1 thread each")
        walls: dict[str, list[float]] = {"pool": [], "ray": []}
        for rep in range(a.reps):
            for engine in ("pool", "ray") if rep % 2 == 0 else ("ray", "pool"):
                spec = {
                    "seeds": a.ray_seeds,
                    "threads": 1,
                    "batch": False,
                    "epochs": a.epochs,
                    "jobs": 2,
                    "engine": "ray" if engine == "ray" else "local",
                }
                walls[engine].append(measure(spec)["wall"])
        pool, ray_ = statistics.median(walls["pool"]), statistics.median(walls["ray"])
        print(
            f"local pool (2 processes): {pool:.1f} s; private Ray cluster (2 CPUs, start-up included): {ray_:.1f} s;"
            f" Ray/pool wall time x{ray_ / pool:.2f}"
        )
    first = [ratios[k] for k in ratios if k[0] == 5]
    if first:
        print(f"batched/one-by-one runs-per-minute ratio at S=5: {first[0]:.2f}")


if __name__ == "__main__":
    main()
