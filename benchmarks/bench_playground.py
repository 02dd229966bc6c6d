"""Playground and timeline costs on the default 2-D preset (Moons · GRKAN), each as a ratio to its budget
(a ratio <= 1.0 meets it). Prints, does not assert: timings depend on the machine and its load.

- live view: the Train page's live views (snapshot of the model now, every chart, Streamlit's marshalling) once
  per tick, as a share of the training time of the ticks ("real time" speed); budget 30 %;
- one snapshot (:meth:`Timeline.capture`) on the default model; budget 5 ms;
- a 60 x 60 region map (:func:`kamoe_viz.interpret.gates.region_map`); budget 20 ms;
- scrubbing the timeline: the Gates page rerun after moving `Timeline epoch` (Streamlit AppTest, whole page script);
  budget 300 ms.

    python benchmarks/bench_playground.py            # 5 repetitions of the small timings
    python benchmarks/bench_playground.py --reps 9 --scrubs 8
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

BUDGETS = {
    "live view share of training": 0.30,
    "one snapshot (s)": 0.005,
    "60x60 region map (s)": 0.020,
    "timeline scrub page redraw (s)": 0.300,
}


def _median_seconds(fn, reps: int) -> float:
    fn()  # warm up
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def preset_config():
    from kamoe_viz.presets import preset_config as config_of

    return config_of("moons")


def live_views(session) -> None:
    """What the live fragment draws per redraw: the Train page's own ``views`` (kamoe_viz_app/playground.py), run
    without a server, so Streamlit still marshals every chart (spec and Arrow data) but sends nothing."""
    import logging

    logging.getLogger("streamlit").setLevel(logging.ERROR)  # "missing ScriptRunContext" in bare mode
    from kamoe_viz_app.playground import views

    views(session)


def live_view_share(trainings: int = 3) -> tuple[float, int, float]:
    """(view time / training time over ``trainings`` Plays to the end, ticks, first draw in seconds). The first
    draw builds each chart once (later ones refill its data); it is reported apart, as a running server pays it
    once per browser session."""
    from kamoe_viz.training.session import TrainingSession

    warm = TrainingSession(preset_config())
    warm.step()
    t0 = time.perf_counter()
    live_views(warm)  # the first draw: imports, one Altair build per chart
    first = time.perf_counter() - t0
    train = view = 0.0
    ticks = 0
    for _ in range(trainings):
        session = TrainingSession(preset_config())
        session.play()
        while not session.done:
            t0 = time.perf_counter()
            session.tick("real time")
            t1 = time.perf_counter()
            live_views(session)
            train += t1 - t0
            view += time.perf_counter() - t1
            ticks += 1
    return view / train, ticks, first


def snapshot_and_region(reps: int) -> tuple[float, float]:
    from kamoe_viz.interpret import gates as gt
    from kamoe_viz.training.session import TrainingSession

    session = TrainingSession(preset_config())
    session.step(5)
    snap = _median_seconds(lambda: session.timeline.capture(session.model, session.epoch), reps)
    region = _median_seconds(lambda: gt.region_map(session.model, session.dataset, resolution=60), reps)
    return snap, region


def scrub_redraw(scrubs: int) -> float:
    import _app_support  # noqa: F401  (AppTest runs app.py as the server does)
    from _app_support import new_app

    query = {
        "data.name": "moons",
        "model.gate": "grkan",
        "model.gate_activation": "softmax",
        "model.n_experts": "2",
        "model.expert": "kan",
        "model.expert_hidden": "8",
        "model.kan_grid": "5",
        "train.epochs": "30",
        "train.early_stopping": "0",
        "train.lr": "0.01",
    }
    at = new_app(query, timeout=300)
    next(b for b in at.button if b.label == "Play").click().run()
    session = at.session_state["_playground"]
    while not session.done:  # each run ticks the live fragment, as its timer does in a browser
        at.run()
    at.switch_page("pages/gates.py").run()
    slider = next(s for s in at.select_slider if s.label == "Timeline epoch")
    epochs = session.timeline.epochs
    slider.set_value(epochs[0]).run()  # warm: the page's other charts are cached per run after the first visit
    times = []
    for k in range(scrubs):
        slider = next(s for s in at.select_slider if s.label == "Timeline epoch")
        t0 = time.perf_counter()
        slider.set_value(epochs[(k * 7 + 3) % len(epochs)]).run()
        times.append(time.perf_counter() - t0)
    assert not at.exception, [e.value for e in at.exception]
    return statistics.median(times)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--scrubs", type=int, default=5)
    parser.add_argument("--trainings", type=int, default=3, help="Plays to the end for the live view share")
    args = parser.parse_args(argv)
    import torch

    from kamoe_viz.training import configure_cpu_threads

    configure_cpu_threads(None, batch_size=preset_config().train.batch_size)
    share, ticks, first = live_view_share(args.trainings)
    snap, region = snapshot_and_region(args.reps)
    scrub = scrub_redraw(args.scrubs)
    measured = {
        "live view share of training": share,
        "one snapshot (s)": snap,
        "60x60 region map (s)": region,
        "timeline scrub page redraw (s)": scrub,
    }
    print(
        f"Moons · GRKAN preset, torch {torch.__version__}, {torch.get_num_threads()} thread(s); live view over "
        f"{ticks} ticks of {args.trainings} trainings (first draw, not in the share: {first * 1000:.0f} ms)"
    )
    print(f"{'measure':34s} {'measured':>10s} {'budget':>8s} {'ratio':>7s}")
    for name, value in measured.items():
        budget = BUDGETS[name]
        print(f"{name:34s} {value:10.4f} {budget:8.3f} {value / budget:7.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
