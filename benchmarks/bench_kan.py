"""KAN layer speed: our KANLinear against pykan (PyPI ``pykan``, its own environment), same widths, same data.

A two-layer KAN [8, WIDTH, 1] (grid 3, order 3, SiLU base) on the standardised California rows, built from our
KANLinear on one side and from pykan's KAN (speed mode: no symbolic branch, no saved activations) on the other.
Measured in separate subprocesses, alternating A/B, medians over repetitions:
  - Adam training steps per second at batch 32,
  - forward + backward time at batch 1024.
pykan is installed on first use into benchmarks/.envs/pykan (pip, from PyPI).

    python benchmarks/bench_kan.py                 # width 64, 3 repetitions
    python benchmarks/bench_kan.py --width 16 --reps 5
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
from bench_train import DEFAULT_CSV, RESULTS, california_npz  # noqa: E402


def run(
    python: Path, side: str, data: Path, width: int, grid: int, order: int, steps: int, seed: int, threads: int
) -> dict:
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    if threads > 0:
        env["OMP_NUM_THREADS"] = str(threads)
    proc = subprocess.run(
        [
            str(python),
            str(HERE / "_kan_worker.py"),
            side,
            str(data),
            str(width),
            str(grid),
            str(order),
            str(steps),
            str(seed),
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=3600,
        env=env,
    )
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    if proc.returncode != 0 or not lines:
        raise SystemExit(f"{side} failed with exit code {proc.returncode}:\n{proc.stderr[-3000:]}")
    return json.loads(lines[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--width", type=int, default=64, help="hidden width of the [8, WIDTH, 1] KAN (default 64)")
    parser.add_argument("--grid", type=int, default=3)
    parser.add_argument("--order", type=int, default=3)
    parser.add_argument("--steps", type=int, default=500, help="timed training steps per repetition")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="1 repetition, 150 steps")
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch threads on both sides (default 1; 0 = torch's default). On a shared 2-core "
        "machine torch's spinning 2-thread pool makes timings meaningless",
    )
    parser.add_argument("--csv", type=Path, default=Path(os.environ.get("KAMOE_CALIFORNIA_CSV", DEFAULT_CSV)))
    args = parser.parse_args(argv)
    if args.quick:
        args.reps, args.steps = 1, 150
    if min(args.width, args.grid, args.order, args.steps, args.reps) < 1:
        parser.error("--width, --grid, --order, --steps and --reps must be positive")
    if not args.csv.exists():
        parser.error(f"--csv: {args.csv} does not exist")
    pythons = {"ours": Path(sys.executable), "pykan": ensure_env("pykan")}
    data = california_npz(args.csv)
    print(
        f"# bench_kan  {time.strftime('%Y-%m-%d %H:%M')}  cpus={os.cpu_count()}  widths=[8, {args.width}, 1]  "
        f"grid={args.grid}  order={args.order}  reps={args.reps}  threads={args.threads or 'torch default'}  "
        f"load={os.getloadavg()[0]:.1f}",
        flush=True,
    )
    results: dict[str, list[dict]] = {"ours": [], "pykan": []}
    for rep in range(args.reps):
        for side in ("ours", "pykan") if rep % 2 == 0 else ("pykan", "ours"):
            r = run(pythons[side], side, data, args.width, args.grid, args.order, args.steps, rep, args.threads)
            results[side].append(r)
            print(
                f"rep {rep + 1} {side:6s} train steps/s (batch 32) {r['train_steps_per_second_b32']:8.1f}   "
                f"fwd+bwd (batch 1024) {r['fwd_bwd_ms_b1024']:7.2f} ms   params {r['params']}",
                flush=True,
            )
    med = {
        side: {
            "steps_per_s": statistics.median(r["train_steps_per_second_b32"] for r in rs),
            "fwd_bwd_ms": statistics.median(r["fwd_bwd_ms_b1024"] for r in rs),
            "params": rs[0]["params"],
        }
        for side, rs in results.items()
    }
    step_ratio = med["ours"]["steps_per_s"] / med["pykan"]["steps_per_s"]
    fb_ratio = med["pykan"]["fwd_bwd_ms"] / med["ours"]["fwd_bwd_ms"]
    print("\nside    steps/s(b32)  fwd+bwd_ms(b1024)  params")
    for side, m in med.items():
        print(f"{side:6s} {m['steps_per_s']:13.1f} {m['fwd_bwd_ms']:18.2f} {m['params']:7d}")
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"bench_kan-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.write_text(
        json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, "median": med, "runs": results}, indent=1)
    )
    print(f"(details: {out.relative_to(ROOT)})")
    print(f"fwd+bwd speed-up at batch 1024 (pykan time / ours): x{fb_ratio:.2f}")
    print(f"training steps/s ratio ours/pykan at batch 32: x{step_ratio:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
