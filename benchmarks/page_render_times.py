"""Render times of the interpretation pages (AppTest, CPU) for a model trained on California Housing.

    KAMOE_CALIFORNIA_CSV=/path/california_housing.csv .venv/bin/python benchmarks/page_render_times.py \
        [--epochs 3] [--expert mlp|kan] [--repeats 3]

For each page: the first visit (computes and caches the interpretation results), then switching back to it from
another page and a plain rerun (both served from the per-run cache), each the median of ``--repeats``. Training
quality does not matter for these timings, so a few epochs are enough.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

PAGES = ["pages/splines.py", "pages/gates.py", "pages/experts.py", "pages/attribution.py"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--expert", default="mlp", choices=["mlp", "kan"])
    parser.add_argument("--gate", default="grkan", choices=["linear", "grn", "grkan"])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    from interpret_helpers import open_page

    from kamoe_viz.config import RunConfig
    from kamoe_viz.training import train_run

    config = RunConfig()
    config.data.name = "california"
    config.model.gate = args.gate
    config.model.expert = args.expert
    config.train.epochs = args.epochs
    config.train.device = "cpu"
    start = time.perf_counter()
    run = train_run(config)
    print(
        f"trained {args.gate}/{args.expert} on {run.dataset.sizes()} in {time.perf_counter() - start:.1f}s",
        file=sys.stderr,
    )

    at = None
    results = {}
    for page in PAGES:
        t = time.perf_counter()
        at = open_page(page, run, timeout=600) if at is None else at.switch_page(page).run(timeout=600)
        first = time.perf_counter() - t
        assert not at.exception, [e.value for e in at.exception]
        results[page] = {"first_visit_s": round(first, 3)}
    for page in PAGES:
        switch, rerun = [], []
        for _ in range(args.repeats):
            other = PAGES[(PAGES.index(page) + 1) % len(PAGES)]
            at.switch_page(other).run(timeout=600)
            t = time.perf_counter()
            at.switch_page(page).run(timeout=600)
            switch.append(time.perf_counter() - t)
            t = time.perf_counter()
            at.run(timeout=600)
            rerun.append(time.perf_counter() - t)
            assert not at.exception, [e.value for e in at.exception]
        charts = len(list(at.get("vega_lite_chart")) + list(at.get("arrow_vega_lite_chart")))
        results[page].update(
            switch_to_s=round(statistics.median(switch), 3), rerun_s=round(statistics.median(rerun), 3), charts=charts
        )
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(
        json.dumps(
            {
                "gate": args.gate,
                "expert": args.expert,
                "rows": run.dataset.sizes(),
                "cpu_count": os.cpu_count(),
                "load_avg_1min": round(load, 2),
                "pages": results,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
