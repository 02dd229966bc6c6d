"""Gates side by side: the same data, split, experts and training settings with each gate, over several seeds.

The data split stays fixed (``data.seed``) and the *training* seed varies (initialisation and batch shuffling), so
the seeds pair up across variants: seed s of GRKAN is compared with seed s of GRN. With ``vary_split=True`` each
seed also draws its own split (``data.seed = seed``); pairs still share their split.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from kamoe_viz import stats
from kamoe_viz.compare import engines, matching
from kamoe_viz.compare.results_file import ResultsFile, run_key
from kamoe_viz.compare.tables import ComparisonResult, assemble, routing_verdict, stats_rows
from kamoe_viz.compare.worker import GATE_SAMPLE_ROWS, RunOutcome, RunSpec, cpu_count, data_key
from kamoe_viz.config import GATE_FAMILIES, ROUTINGS, SEQUENTIAL_EXPERTS, TOP_K_ROUTINGS, RunConfig
from kamoe_viz.errors import ValidationError
from kamoe_viz.labels import metric_label
from kamoe_viz.training.results import sweep_epoch_cap_notice

if TYPE_CHECKING:
    from kamoe_viz.data.base import Dataset

MAX_SEEDS = 50
MAX_RUNS = 2000
VARIANT_ORDER = ("standard", "linear", "grn", "grkan")


@dataclass
class Progress:
    """What ``on_progress`` receives: runs finished so far, the total, and a fraction including the current run."""

    done: int
    total: int
    fraction: float
    message: str
    row: dict[str, Any] | None = None  # the finished run's table row, when a run just finished
    milestone: bool = False  # a message worth its own line (e.g. runs resumed from the results file)


def normalise_gates(gates: Iterable[str] | str) -> list[str]:
    """Accept ``"linear,grn"`` or a sequence; check every name; keep order, drop repeats."""
    if isinstance(gates, str):
        gates = [g.strip() for g in gates.split(",") if g.strip()]
    names = [str(g).strip().lower() for g in gates]
    for g in names:
        if g not in GATE_FAMILIES:
            raise ValidationError("gates", g, f"each gate must be one of {', '.join(GATE_FAMILIES)}")
    names = list(dict.fromkeys(names))
    return names


def normalise_routings(routings: Iterable[str] | str | None) -> list[str]:
    """Accept ``"dense,switch"`` or a sequence of router names (kamoe_viz.routing_specs.ROUTERS); keep order."""
    if routings is None:
        return []
    if isinstance(routings, str):
        routings = [r.strip() for r in routings.split(",") if r.strip()]
    names = [str(r).strip().lower() for r in routings]
    for r in names:
        if r not in ROUTINGS:
            raise ValidationError("routings", r, f"each router must be one of {', '.join(ROUTINGS)}")
    return list(dict.fromkeys(names))


def routed_variant(gate: str, routing: str) -> str:
    """The variant name of a gate with a router, e.g. 'grkan/switch' (a plain gate name keeps the base's router)."""
    return f"{gate}/{routing}"


def normalise_seeds(seeds: int | Sequence[int], first: int = 0) -> list[int]:
    """``5`` -> [first, ..., first+4]; a list is checked and kept in order (no repeats)."""
    if isinstance(seeds, bool):
        raise ValidationError("seeds", seeds, f"must be a count from 1 to {MAX_SEEDS} or a list of seeds")
    if isinstance(seeds, (int, np.integer)):
        if not 1 <= int(seeds) <= MAX_SEEDS:
            raise ValidationError("seeds", seeds, f"must be a count from 1 to {MAX_SEEDS} or a list of seeds")
        return list(range(first, first + int(seeds)))
    values = list(seeds)
    if not values or len(values) > MAX_SEEDS:
        raise ValidationError("seeds", values, f"must list 1 to {MAX_SEEDS} seeds")
    out = []
    for s in values:
        if isinstance(s, bool) or not isinstance(s, (int, np.integer)) or not 0 <= int(s) < 2**31:
            raise ValidationError("seeds", s, "each seed must be an integer from 0 to 2147483647")
        if int(s) in out:
            raise ValidationError("seeds", s, "each seed may appear only once (pairs are matched by seed)")
        out.append(int(s))
    return out


def variant_config(base: RunConfig, variant: str, seed: int, vary_split: bool = False) -> RunConfig:
    """The base config turned into one variant ('standard', a gate family, or 'gate/router') with one training
    seed. A router that reads top_k gets the base's top_k (1 if it has none); one that does not gets top_k 0."""
    cfg = copy.deepcopy(base)
    gate, _, routing = variant.partition("/")
    if variant == "standard":
        cfg.model.kind = "standard"
        cfg.model.routing, cfg.model.top_k, cfg.model.shared_experts = "dense", 0, 0
    else:
        cfg.model.kind = "moe"
        cfg.model.gate = gate
        if routing:
            cfg.model.routing = routing
            cfg.model.top_k = (cfg.model.top_k or 1) if routing in TOP_K_ROUTINGS else 0
    cfg.train.seed = int(seed)
    if vary_split:
        cfg.data.seed = int(seed)
    return cfg.validate()


def plan(
    base_config: RunConfig,
    gates: Iterable[str] | str = ("linear", "grn", "grkan"),
    seeds: int | Sequence[int] = 5,
    include_standard: bool = True,
    vary_split: bool = False,
    labels: dict[str, Any] | None = None,
    start_index: int = 0,
    routings: Iterable[str] | str | None = None,
) -> list[RunSpec]:
    """The runs of a comparison, seed-major (all variants of seed 0, then seed 1...) so early stops are balanced.
    With ``routings``, each gate runs with each router (variants 'gate/router')."""
    base = copy.deepcopy(base_config).validate()
    routers = normalise_routings(routings)
    gate_names = normalise_gates(gates)
    if routers:
        gate_names = [routed_variant(g, r) for g in gate_names for r in routers]
    variants = (["standard"] if include_standard else []) + gate_names
    if not variants:
        raise ValidationError("gates", "", "choose at least one gate (linear, grn, grkan) or the standard model")
    seed_list = normalise_seeds(seeds, first=base.train.seed)
    specs: list[RunSpec] = []
    for seed in seed_list:
        for variant in variants:
            specs.append(
                RunSpec(
                    start_index + len(specs),
                    variant,
                    seed,
                    variant_config(base, variant, seed, vary_split),
                    dict(labels or {}),
                )
            )
    if len(specs) > MAX_RUNS:
        raise ValidationError("runs", len(specs), f"a comparison may have at most {MAX_RUNS} runs")
    return specs


def check_compatible(specs: list[RunSpec], datasets: dict[str, Dataset]) -> None:
    """Fail before training anything when a variant cannot be built on its data (e.g. LSTM on a table)."""
    from kamoe_viz.nn import build_model

    seen = set()
    for spec in specs:
        key = (
            data_key(spec.config),
            spec.config.model.kind,
            spec.config.model.gate,
            spec.config.model.routing,
            spec.config.model.expert,
            spec.config.model.expert_hidden,
        )
        if key in seen:
            continue
        seen.add(key)
        ds = datasets[data_key(spec.config)]
        if spec.config.model.expert in SEQUENTIAL_EXPERTS and not ds.is_sequence:
            raise ValidationError(
                "model.expert",
                spec.config.model.expert,
                f"LSTM/GRU experts need a sequential dataset; {ds.name!r} is tabular "
                "(choose mlp or kan, or a series dataset)",
            )
        build_model(copy.deepcopy(spec.config.model), ds)


def load_datasets(specs: list[RunSpec]) -> dict[str, Dataset]:
    """Load each distinct data split once (the split is identical for every run that shares it)."""
    from kamoe_viz.data import load_dataset

    out: dict[str, Dataset] = {}
    for spec in specs:
        key = data_key(spec.config)
        if key not in out:
            out[key] = load_dataset(copy.deepcopy(spec.config.data))
    return out


def check_jobs(jobs: int) -> int:
    if isinstance(jobs, bool) or not isinstance(jobs, (int, np.integer)) or not 1 <= int(jobs) <= 64:
        raise ValidationError("jobs", jobs, f"must be an integer from 1 to 64 (this machine has {cpu_count()} cores)")
    return int(jobs)


def run_specs(
    specs: list[RunSpec],
    *,
    jobs: int = 1,
    on_progress: Callable[[Progress], None] | None = None,
    sample_rows: int = GATE_SAMPLE_ROWS,
    datasets: dict[str, Dataset] | None = None,
    engine: str = "local",
    address: str | None = None,
    batch: bool = True,
    results: ResultsFile | None = None,
    seeds_per_task: int | None = None,
) -> list[RunOutcome]:
    """Load data, check every variant builds, then train the specs on ``engine`` (see
    :mod:`kamoe_viz.compare.engines`). With ``results``, runs already in that file are taken from it, not trained
    again, and each run's row is written to it as soon as it finishes. Outcomes come back in spec order."""
    engines.check_engine(engine)
    jobs = check_jobs(jobs)
    datasets = datasets or load_datasets(specs)
    check_compatible(specs, datasets)
    total = len(specs)
    outcomes: dict[int, RunOutcome] = {}
    prior = results.finished() if results is not None else {}
    todo = []
    for spec in specs:
        row = prior.get(run_key(spec.variant, spec.labels, spec.config.to_dict()))
        if row is None:
            todo.append(spec)
        else:
            outcomes[spec.index] = RunOutcome(spec.index, dict(row), pd.DataFrame(), None)
    if results is not None:
        results.resumed = len(outcomes)
    if outcomes and on_progress:
        on_progress(
            Progress(
                len(outcomes),
                total,
                len(outcomes) / total,
                f"{len(outcomes)} run(s) already in {results.path if results else ''}; skipped",
                milestone=True,
            )
        )

    def on_done(out: RunOutcome) -> None:
        outcomes[out.index] = out
        if results is not None:
            results.add(out.row)
        if on_progress:
            r = out.row
            what = f"{r['variant']} seed {r['seed']}"
            if r.get("stopped_reason") == "error":
                result = f"error: {r.get('message', '')}"
            else:
                result = "diverged" if r.get("diverged") else f"{r['metric']} {r['test_metric']:.4f}"
            done = len(outcomes)
            on_progress(Progress(done, total, done / total, f"finished {what}: {result}", dict(r)))

    def on_epoch(spec: RunSpec, info: Any) -> None:
        if on_progress:
            epochs = max(1, spec.config.train.epochs)
            within = min(1.0, getattr(info, "epoch", 0) / epochs)
            done = len(outcomes)
            on_progress(
                Progress(
                    done,
                    total,
                    (done + within) / total,
                    f"{spec.variant} seed {spec.seed}: epoch {getattr(info, 'epoch', '?')}",
                )
            )

    if todo:
        per_task = seeds_per_task or (engines.MAX_SEEDS_PER_TASK if batch else 1)
        tasks = engines.split_tasks(todo, per_task)
        with engines.engine_context(
            engine, jobs=jobs if engine == "local" or jobs > 1 else None, address=address
        ) as eng:
            eng.run(tasks, dict(datasets), on_done, sample_rows=sample_rows, batch=batch, on_epoch=on_epoch)
    return [outcomes[s.index] for s in specs]


def run(
    base_config: RunConfig,
    gates: Iterable[str] | str = ("linear", "grn", "grkan"),
    seeds: int | Sequence[int] = 5,
    include_standard: bool = True,
    jobs: int = 1,
    on_progress: Callable[[Progress], None] | None = None,
    *,
    vary_split: bool = False,
    sample_rows: int = GATE_SAMPLE_ROWS,
    engine: str = "local",
    address: str | None = None,
    batch: bool = True,
    results_path: str | None = None,
    routings: Iterable[str] | str | None = None,
) -> ComparisonResult:
    """Train every variant with every seed and compare them (see the module docstring for what varies).

    ``engine``/``address``: where the runs train (:mod:`kamoe_viz.compare.engines`); ``batch``: seeds of one
    configuration train together as one model where supported; ``results_path``: a CSV that receives each row as
    its run finishes and lets the same call resume (runs already in it are not trained again)."""
    started = datetime.now(UTC).isoformat(timespec="seconds")
    t0 = time.perf_counter()
    specs = plan(base_config, gates, seeds, include_standard, vary_split, routings=routings)
    results = ResultsFile(results_path) if results_path else None
    outcomes = run_specs(
        specs,
        jobs=jobs,
        on_progress=on_progress,
        sample_rows=sample_rows,
        engine=engine,
        address=address,
        batch=batch,
        results=results,
    )
    table, histories, gate_samples = assemble(outcomes)
    gate_samples, matching_note = matching.align_gate_samples(gate_samples, shared_rows=not vary_split)
    ran = stats_rows(table)
    cap_note = sweep_epoch_cap_notice(list(ran["stopped_reason"]), list(ran["epochs_run"]), specs[0].config.train)
    if results is not None:
        results.write_table(table)
    variants = list(dict.fromkeys(s.variant for s in specs))
    metric = str(table["metric"].iloc[0])
    label = metric_label(metric)
    scored = stats_rows(table)
    pair_stats = stats.pairwise(scored, "test_metric", "variant", "seed", order=variants, metric=label)
    bounds = {"r2": (-math.inf, 1.0), "accuracy": (0.0, 1.0)}.get(metric, (-math.inf, math.inf))
    summ = stats.summary(scored, "test_metric", "variant", order=variants, bounds=bounds)
    line = stats.headline(scored, "test_metric", "variant", "seed", metric=label)
    line += routing_verdict(scored, variants)
    n_div = int(table["diverged"].astype(bool).sum())
    if n_div:
        line += f" {n_div} run(s) diverged (flagged in the table; their best-so-far scores are kept)."
    n_err = len(table) - len(scored)
    if n_err:
        line += f" {n_err} run(s) failed (error rows; re-run the same command to retry them)."
    return ComparisonResult(
        table=table,
        histories=histories,
        gate_samples=gate_samples,
        stats=pair_stats,
        summary=summ,
        expert_matching=matching_note,
        epoch_cap=cap_note or "",
        verdict=line,
        metric=metric,
        config=copy.deepcopy(base_config).validate().to_dict(),
        seeds=sorted({s.seed for s in specs}, key=[s.seed for s in specs].index),
        variants=variants,
        vary_split=vary_split,
        jobs=check_jobs(jobs),
        wall_seconds=time.perf_counter() - t0,
        started=started,
        extra={
            "engine": engine,
            "address": address,
            "batch": batch,
            "resumed": results.resumed if results is not None else 0,
        },
    )
