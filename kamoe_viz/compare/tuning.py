"""Hyperparameter search on Ray Tune (``compare --tune``): a grid over learning rate, expert width, KAN grid size
and gate, with the ASHA scheduler stopping poor trials early.

A trial is one setting x a batch of seeds trained together as one batched model (:func:`train_batched`), and it
reports the seeds' mean validation loss after every epoch; ASHA compares trials at its rungs on that and stops
the worse ones. Why seeds per trial, not a trial per seed: Ray Tune costs ~1 s per trial here (with
``reuse_actors=True``; ~5 s without), more than a small run's training, so a trial must carry several runs -- and
a setting judged on several seeds is judged on more than one draw of luck. Configurations that cannot train batched
(LSTM/GRU experts, other routers) train their seeds one by one and report once at the end.

The cluster is the Ray engine's (:class:`~kamoe_viz.compare.engines.RayEngine`): a private local one without an
address, else the one at ``address``; it is always shut down when the search ends. Tune's own files go to a
temporary folder that is removed afterwards (the result is the returned table).
"""

from __future__ import annotations

import copy
import json
import math
import shutil
import tempfile
from dataclasses import dataclass
from typing import Any

import pandas as pd

from kamoe_viz.config import RunConfig
from kamoe_viz.errors import ValidationError

TUNE_AXES = {"lr": "train.lr", "width": "model.expert_hidden", "grid": "model.kan_grid", "gate": "model.gate"}
METRIC = "val_loss"  # what ASHA minimises: the mean over the trial's seeds of their validation loss
DEFAULT_GRACE = 2  # epochs every trial gets before ASHA may stop it
REDUCTION_FACTOR = 3  # ASHA keeps about 1 in 3 trials at each rung


@dataclass
class TuneResult:
    """One row per trial (its setting, epochs reached, final mean validation loss, mean test metric when it ran to
    the end, and whether ASHA stopped it), best first; ``best`` is the best trial's setting."""

    table: pd.DataFrame
    best: dict[str, Any]
    metric_label: str
    wall_seconds: float


def parse_values(axis: str, text: str | None) -> list[Any]:
    """'1e-3,3e-3' -> [0.001, 0.003] for one axis of :data:`TUNE_AXES` (width: integers; 32x32 is two layers)."""
    if axis not in TUNE_AXES:
        raise ValidationError("tune axis", axis, f"must be one of {', '.join(TUNE_AXES)}")
    parts = [p.strip() for p in str(text or "").split(",") if p.strip()]
    try:
        if axis == "lr":
            values: list[Any] = [float(p) for p in parts]
            if any(not (0 < v < 1) or not math.isfinite(v) for v in values):
                raise ValueError
        elif axis == "width":
            values = [tuple(int(w) for w in p.split("x")) for p in parts]
            if any(w < 1 for v in values for w in v):
                raise ValueError
        elif axis == "grid":
            values = [int(p) for p in parts]
            if any(v < 1 for v in values):
                raise ValueError
        else:
            values = parts
    except ValueError:
        raise ValidationError(
            f"--tune-{axis}",
            text,
            {
                "lr": "must be learning rates in (0, 1), e.g. 1e-3,1e-2",
                "width": "must be positive widths, e.g. 16,32 or 32x32",
                "grid": "must be positive KAN grid sizes, e.g. 3,5",
            }.get(axis, "must be names separated by commas"),
        ) from None
    return values


def apply_setting(base: RunConfig, setting: dict[str, Any]) -> RunConfig:
    """The base configuration with one trial's values (validated)."""
    config = copy.deepcopy(base)
    for axis, value in setting.items():
        section, field = TUNE_AXES[axis].split(".")
        setattr(getattr(config, section), field, list(value) if axis == "width" else value)
    return config.validate()


def _trial(params: dict[str, Any]) -> None:
    """A Tune trial: the setting's seeds trained (batched when they can be), the mean validation loss reported
    after every epoch, and the final scores once at the end."""
    from ray import tune

    from kamoe_viz.compare.engines import _prepare_ray_worker
    from kamoe_viz.compare.worker import _dataset_for, _primary_metric
    from kamoe_viz.training import train_run
    from kamoe_viz.training.batched import train_batched, unsupported_reason

    _prepare_ray_worker()
    setting = {k: params[k] for k in TUNE_AXES if k in params}
    if "width" in setting:  # travels as text ("32x32"): Tune would read a list as a nested search space
        setting["width"] = parse_values("width", setting["width"])[0]
    config = apply_setting(RunConfig.from_dict(json.loads(params["base"])), setting)
    configs = []
    for seed in params["seeds"]:
        c = copy.deepcopy(config)
        c.train.seed = int(seed)
        configs.append(c)
    ds = _dataset_for(config)
    epochs = 0

    def report(epoch: int, val_losses: list[float], finished: bool) -> None:
        nonlocal epochs
        epochs = epoch
        if not finished:  # the last epoch is reported once, with the final scores (below)
            tune.report({METRIC: _mean(val_losses), "epoch": epoch})

    if len(configs) > 1 and unsupported_reason(config) is None:
        runs = train_batched(configs, ds, on_epoch=report)
    else:
        runs = [train_run(c, dataset=ds) for c in configs]
    metric = _primary_metric(ds.task)
    tune.report(
        {
            METRIC: _mean([r.result.history["val_loss"].iloc[-1] if len(r.result.history) else math.nan for r in runs]),
            "epoch": max(epochs, max(r.result.epochs_run for r in runs)),
            "best_val_loss": _mean([float(r.result.metrics.get("val_loss", math.nan)) for r in runs]),
            "test_metric": _mean([float(r.result.metrics.get(metric, math.nan)) for r in runs]),
            "kamoe_final": 1,
        }
    )


def _mean(values: list[float]) -> float:
    finite = [float(v) for v in values if v is not None and math.isfinite(float(v))]
    return sum(finite) / len(finite) if finite else math.nan


def tune_search(
    base: RunConfig,
    space: dict[str, list[Any]],
    *,
    seeds: int | list[int] = 3,
    address: str | None = None,
    cpus: int | None = None,
    grace_period: int = DEFAULT_GRACE,
    reuse_actors: bool = True,
) -> TuneResult:
    """Grid search over ``space`` (axis -> values, axes of :data:`TUNE_AXES`) with ASHA on the mean validation loss
    of each trial's seeds (``seeds``: a count from ``base.train.seed``, or the seeds)."""
    import time

    from kamoe_viz.compare.engines import RayEngine
    from kamoe_viz.compare.worker import _dataset_for, _primary_metric

    base = copy.deepcopy(base).validate()
    space = {axis: list(values) for axis, values in space.items() if values}
    for axis in space:
        if axis not in TUNE_AXES:
            raise ValidationError("tune axis", axis, f"must be one of {', '.join(TUNE_AXES)}")
    if not space:
        raise ValidationError("--tune", "no values", "needs at least one axis with values, e.g. --tune-lr 1e-3,1e-2")
    seed_list = list(range(base.train.seed, base.train.seed + int(seeds))) if isinstance(seeds, int) else list(seeds)
    if not seed_list:
        raise ValidationError("--seeds", seeds, "must name at least one seed")
    for values in _grid(space):  # every setting valid before a cluster starts
        apply_setting(base, values)
    grace = max(1, min(int(grace_period), base.train.epochs))
    started = time.perf_counter()
    engine = RayEngine(address, num_cpus=cpus)
    storage = tempfile.mkdtemp(prefix="kamoe_tune_")
    try:
        from ray import tune
        from ray.tune.schedulers import ASHAScheduler

        scheduler = ASHAScheduler(
            time_attr="training_iteration",
            max_t=base.train.epochs,
            grace_period=grace,
            reduction_factor=REDUCTION_FACTOR,
        )
        param_space: dict[str, Any] = {
            axis: tune.grid_search([_show(axis, v) for v in values]) for axis, values in space.items()
        }
        param_space.update(base=json.dumps(base.to_dict()), seeds=seed_list)
        tuner = tune.Tuner(
            tune.with_resources(_trial, {"cpu": 1}),
            param_space=param_space,
            tune_config=tune.TuneConfig(metric=METRIC, mode="min", scheduler=scheduler, reuse_actors=reuse_actors),
            run_config=tune.RunConfig(storage_path=storage, name="kamoe", verbose=0),
        )
        grid = tuner.fit()
        rows = []
        for i in range(len(grid)):  # ResultGrid is indexable, not typed as iterable
            res = grid[i]
            cfg, m = res.config or {}, res.metrics or {}
            row: dict[str, Any] = {axis: _show(axis, cfg.get(axis)) for axis in space}
            row.update(
                epochs=int(m.get("epoch", 0) or 0),
                val_loss=float(m.get(METRIC, math.nan)),
                best_val_loss=float(m.get("best_val_loss", math.nan)),
                test_metric=float(m.get("test_metric", math.nan)),
                stopped="completed" if m.get("kamoe_final") else ("error" if res.error else "asha"),
                seeds=len(seed_list),
            )
            if res.error:
                row["message"] = str(res.error).strip().splitlines()[-1][:300] if str(res.error).strip() else "error"
            rows.append(row)
    finally:
        engine.close()
        shutil.rmtree(storage, ignore_errors=True)
    table = pd.DataFrame(rows).sort_values("val_loss", na_position="last").reset_index(drop=True)
    best = {axis: table.iloc[0][axis] for axis in space} if len(table) else {}
    label = _primary_metric(_dataset_for(base).task)
    return TuneResult(table=table, best=best, metric_label=label, wall_seconds=time.perf_counter() - started)


def _grid(space: dict[str, list[Any]]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = [{}]
    for axis, values in space.items():
        out = [{**s, axis: v} for s in out for v in values]
    return out


def _show(axis: str, value: Any) -> Any:
    if axis == "width" and isinstance(value, (list, tuple)):
        return "x".join(str(int(v)) for v in value)
    return value


__all__ = ["TUNE_AXES", "TuneResult", "apply_setting", "parse_values", "tune_search"]
