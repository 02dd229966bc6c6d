"""Research script: which training recipe makes experts specialise on `regimes` over many seeds (issue 15).

Each candidate is a preset (``--base``, default ``regimes``) plus RunConfig overrides, and optionally a schedule
tried here before it became a training option. It is trained at each training seed S with data seed 0, as
``train --preset NAME --seed S --json`` and tests/test_presets.py do, and scored by the NMI of the winning expert
against the true regime, min load and R² (test split). One JSON line per (candidate, seed) is appended to --out.

    OMP_NUM_THREADS=1 PYTHONPATH=. .venv/bin/python scripts/specialisation_search.py --candidates base --seeds 0-9
"""

from __future__ import annotations

import argparse
import json
import math
import time
from typing import Any

import torch

from kamoe_viz.config import RunConfig
from kamoe_viz.presets import get_preset
from kamoe_viz.training.evaluation import routing_report

Overrides = dict[str, dict[str, Any]]
CANDIDATES: dict[str, Overrides] = {
    "base": {},
    "g10": {"train": {"gate_lr_scale": 10.0}},
    "g20": {"train": {"gate_lr_scale": 20.0}},
    "bal0": {"train": {"balance_loss": 0.0}},
    "bal01": {"train": {"balance_loss": 0.1}},
    "bal03": {"train": {"balance_loss": 0.3}},
    "bal1": {"train": {"balance_loss": 1.0}},
    "bal03_ep150": {"train": {"balance_loss": 0.3, "epochs": 150, "early_stopping": 30}},
    "h16_ep150": {"model": {"expert_hidden": [16]}, "train": {"epochs": 150, "early_stopping": 30}},
    "g2": {"train": {"gate_lr_scale": 2.0}},
    "b64": {"train": {"batch_size": 64}},
    "b32": {"train": {"batch_size": 32}},
    "lr1e2_g2": {"train": {"lr": 1e-2, "gate_lr_scale": 2.0}},
    "r3k20": {"train": {"restarts": 3, "restart_epochs": 20}},
    "r3k30": {"train": {"restarts": 3, "restart_epochs": 30}},
    "r4k20": {"train": {"restarts": 4, "restart_epochs": 20}},
    "r3k30_ep150": {"train": {"restarts": 3, "restart_epochs": 30, "epochs": 150, "early_stopping": 30}},
    "ep150": {"train": {"epochs": 150, "early_stopping": 30}},
    "ep150_r5k40": {"train": {"epochs": 150, "early_stopping": 30, "restarts": 5, "restart_epochs": 40}},
    "lik_r5k40": {
        "train": {
            "objective": "likelihood",
            "gate_lr_scale": 5.0,
            "epochs": 150,
            "early_stopping": 30,
            "restarts": 5,
            "restart_epochs": 40,
        }
    },
    "lik_r5k40_bal001": {
        "train": {
            "objective": "likelihood",
            "gate_lr_scale": 5.0,
            "epochs": 150,
            "early_stopping": 30,
            "restarts": 5,
            "restart_epochs": 40,
            "balance_loss": 0.01,
        }
    },
    "ep150_r8k40": {"train": {"epochs": 150, "early_stopping": 30, "restarts": 8, "restart_epochs": 40}},
    "lik_r8k40": {
        "train": {
            "objective": "likelihood",
            "gate_lr_scale": 5.0,
            "epochs": 150,
            "early_stopping": 30,
            "restarts": 8,
            "restart_epochs": 40,
        }
    },
    "lik_r8k40_bal001": {
        "train": {
            "objective": "likelihood",
            "gate_lr_scale": 5.0,
            "epochs": 150,
            "early_stopping": 30,
            "restarts": 8,
            "restart_epochs": 40,
            "balance_loss": 0.01,
        }
    },
    "ep150_r4k50": {"train": {"epochs": 150, "early_stopping": 30, "restarts": 4, "restart_epochs": 50}},
    "lr1e2": {"train": {"lr": 1e-2}},
    "nolrp": {"train": {"lr_patience": 0}},
    "switch": {"model": {"routing": "switch", "capacity_factor": 2.0}},
    "switch_bal01": {"model": {"routing": "switch", "capacity_factor": 2.0}, "train": {"balance_loss": 0.1}},
    "sigbias": {"model": {"routing": "sigmoid_bias", "top_k": 1, "bias_update_rate": 0.01}},
    "linear": {"model": {"gate": "linear"}},
    "grn": {"model": {"gate": "grn"}},
    "e4": {"model": {"n_experts": 4}},
    "e4_bal0": {"model": {"n_experts": 4}, "train": {"balance_loss": 0.0}},
    "e4_h16": {"model": {"n_experts": 4, "expert_hidden": [16]}},
    "h16": {"model": {"expert_hidden": [16]}},
    "wd": {"train": {"weight_decay": 1e-3}},
}
SCHEDULES = ("none", "bal_anneal", "sigma_anneal")


def config_for(base: str, overrides: Overrides, seed: int) -> RunConfig:
    raw = get_preset(base).config(seed).to_dict()
    for section, values in overrides.items():
        raw[section].update(values)
    raw["train"]["device"] = "cpu"
    return RunConfig.from_dict(raw)


def scheduled_run(config: RunConfig, schedule: str, arg: float) -> Any:
    """Train as train_run does, with a per-epoch schedule: ``bal_anneal`` the balance weight from 10x its value
    to 0 over the first ``arg`` epochs; ``sigma_anneal`` a floor on the likelihood's sigma from 1 down to 0 over
    the first ``arg`` epochs."""
    from kamoe_viz.data import load_dataset
    from kamoe_viz.nn import build_model
    from kamoe_viz.training import TrainedRun, Trainer

    dataset = load_dataset(config.data)
    torch.manual_seed(config.train.seed)
    trainer = Trainer(build_model(config.model, dataset), dataset, config.train)
    alpha0 = max(config.train.balance_loss, 0.01) * 10
    while not trainer.done:
        t = trainer.epoch
        frac = max(0.0, 1.0 - t / arg)
        if schedule == "bal_anneal":
            trainer.update_settings(balance_loss=alpha0 * frac)
        elif schedule == "sigma_anneal" and trainer.objective.log_sigma is not None and frac > 0:
            with torch.no_grad():
                trainer.objective.log_sigma.clamp_(min=math.log(max(frac, 1e-3)))
        trainer.run_epochs(1)
    result = trainer.finish()
    trainer.model.cpu().eval()
    return TrainedRun(config=config, dataset=dataset, model=trainer.model, result=result)


def evaluate(base: str, name: str, seed: int, schedule: str, arg: float) -> dict[str, Any]:
    from kamoe_viz.training.pipeline import train_run

    started = time.perf_counter()
    config = config_for(base, CANDIDATES[name], seed)
    run = train_run(config) if schedule == "none" else scheduled_run(config, schedule, arg)
    routing = routing_report(run)
    return {
        "base": base,
        "candidate": name,
        "schedule": schedule,
        "arg": arg,
        "seed": seed,
        "nmi": round(routing["nmi"], 4),
        "r2": round(run.result.metrics["r2"], 4),
        "min_load": round(routing["min_load"], 4),
        "epochs": run.result.epochs_run,
        "seconds": round(time.perf_counter() - started, 2),
    }


def seeds(text: str) -> list[int]:
    low, _, high = text.partition("-")
    return list(range(int(low), int(high or low) + 1))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--base", default="regimes")
    p.add_argument("--candidates", default="base")
    p.add_argument("--schedule", choices=SCHEDULES, default="none")
    p.add_argument("--arg", type=float, default=30.0)
    p.add_argument("--seeds", default="0-9")
    p.add_argument("--out", default="scripts/specialisation_results.jsonl")
    args = p.parse_args()
    torch.set_num_threads(1)
    for name in args.candidates.split(","):
        rows = []
        for seed in seeds(args.seeds):
            row = evaluate(args.base, name, seed, args.schedule, args.arg)
            rows.append(row)
            print(json.dumps(row), flush=True)
            with open(args.out, "a") as fh:
                fh.write(json.dumps(row) + "\n")
        nmi = [r["nmi"] for r in rows]
        r2 = [r["r2"] for r in rows]
        print(
            f"{args.base}/{name}/{args.schedule}:{args.arg:g} nmi mean {sum(nmi) / len(nmi):.3f} min {min(nmi):.3f}"
            f"  r2 mean {sum(r2) / len(r2):.3f} min {min(r2):.3f}  min_load {min(r['min_load'] for r in rows):.3f}"
            f"  {sum(r['seconds'] for r in rows):.0f}s",
            flush=True,
        )


if __name__ == "__main__":
    main()
