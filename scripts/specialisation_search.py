"""Research script: which training recipe makes experts specialise on `regimes` over many seeds (issue 15).

Each candidate is a set of RunConfig overrides; it is trained on seeds 0-9 (data seed = training seed = S) and
scored by the NMI of the winning expert against the true regime and by R², both on the test split, as
`train --json` reports them. Results are appended, one JSON line per (candidate, seed), to --out.

    .venv/bin/python scripts/specialisation_search.py --candidates lik_g5,lik_g5_restarts --seeds 0-9
"""
from __future__ import annotations

import argparse
import json
import time
from typing import Any

import torch

from kamoe_viz.training.evaluation import routing_report
from kamoe_viz.config import RunConfig
from kamoe_viz.training.pipeline import train_run

BASE = {"data": {"name": "regimes"},
        "model": {"gate": "grkan", "gate_activation": "softmax", "n_experts": 3, "expert_hidden": [32]},
        "train": {"epochs": 60, "lr": 3e-3, "early_stopping": 15}}
LIK = {"train": {"objective": "likelihood", "gate_lr_scale": 5.0}}

CANDIDATES: dict[str, dict[str, dict[str, Any]]] = {
    "today": {},
    "lik_g5": LIK,
    "lik_g5_bal01": {"train": {**LIK["train"], "balance_loss": 0.1}},
    "lik_g5_bal001": {"train": {**LIK["train"], "balance_loss": 0.01}},
    "lik_g5_e4": {"model": {"n_experts": 4}, **LIK},
    "lik_g5_h16": {"model": {"expert_hidden": [16]}, **LIK},
    "lik_g5_h8": {"model": {"expert_hidden": [8]}, **LIK},
    "lik_g10": {"train": {"objective": "likelihood", "gate_lr_scale": 10.0}},
    "lik_g5_sigbias": {"model": {"routing": "sigmoid_bias", "top_k": 3, "bias_update_rate": 0.001}, **LIK},
    "lik_g5_switch_bal": {"model": {"routing": "switch", "capacity_factor": 2.0},
                          "train": {**LIK["train"], "balance_loss": 0.01}},
    "lik_g5_long": {"train": {**LIK["train"], "epochs": 200, "early_stopping": 40}},
    "lik_g5_long_lr1": {"train": {**LIK["train"], "epochs": 200, "early_stopping": 40, "lr": 1e-3}},
    "lik_g5_long_mlpgate": {"model": {"gate": "grn"}, "train": {**LIK["train"], "epochs": 200, "early_stopping": 40}},
    "lik_g5_long_r4": {"train": {**LIK["train"], "epochs": 200, "early_stopping": 40},
                       "restart": {"restarts": 4, "restart_epochs": 15}},
    "lik_g5_r4": {**LIK, "restart": {"restarts": 4, "restart_epochs": 15}},
    "lik_g5_long_linear": {"model": {"gate": "linear"}, "train": {**LIK["train"], "epochs": 200, "early_stopping": 40}},
    "lik_g5_long_linear_r3": {"model": {"gate": "linear"},
                              "train": {**LIK["train"], "epochs": 200, "early_stopping": 40},
                              "restart": {"restarts": 3, "restart_epochs": 10}},
    "lik_g5_linear": {"model": {"gate": "linear"}, **LIK},
    "lik_g5_grn": {"model": {"gate": "grn"}, **LIK},
}


def merged(overrides: dict[str, dict[str, Any]], seed: int) -> RunConfig:
    raw = RunConfig().to_dict()
    for part in (BASE, overrides):
        for section, values in part.items():
            raw[section].update(values)
    raw["data"]["seed"] = seed
    raw["train"]["seed"] = seed
    raw["train"]["device"] = "cpu"
    return RunConfig.from_dict(raw)


def restarted_run(config: RunConfig, restarts: int, restart_epochs: int) -> Any:
    """Train ``restarts`` initialisations for ``restart_epochs`` epochs each, continue the one with the lowest
    validation objective (validation split only) to the end."""
    from kamoe_viz.data import load_dataset
    from kamoe_viz.nn import build_model
    from kamoe_viz.training import TrainedRun, Trainer

    dataset = load_dataset(config.data)
    trainers = []
    for k in range(restarts):
        torch.manual_seed(config.train.seed * 1000 + k)
        model = build_model(config.model, dataset)
        trainer = Trainer(model, dataset, config.train)
        trainer.run_epochs(restart_epochs)
        trainers.append(trainer)
    best = min(trainers, key=lambda t: t.best_val)
    while not best.done:
        best.run_epochs(1)
    result = best.finish()
    best.model.cpu().eval()
    return TrainedRun(config=config, dataset=dataset, model=best.model, result=result)


def evaluate(name: str, seed: int) -> dict[str, Any]:
    started = time.perf_counter()
    overrides = {k: dict(v) for k, v in CANDIDATES[name].items()}
    restart = overrides.pop("restart", None)
    config = merged(overrides, seed)
    run = restarted_run(config, **restart) if restart else train_run(config)
    routing = routing_report(run)
    return {"candidate": name, "seed": seed, "nmi": round(routing["nmi"], 4),
            "r2": round(run.result.metrics["r2"], 4), "min_load": round(routing["min_load"], 4),
            "epochs": run.result.epochs_run, "seconds": round(time.perf_counter() - started, 2)}


def seeds(text: str) -> list[int]:
    low, _, high = text.partition("-")
    return list(range(int(low), int(high or low) + 1))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--candidates", default=",".join(CANDIDATES))
    p.add_argument("--seeds", default="0-9")
    p.add_argument("--out", default="scripts/specialisation_results.jsonl")
    args = p.parse_args()
    torch.set_num_threads(1)
    for name in args.candidates.split(","):
        rows = []
        for seed in seeds(args.seeds):
            row = evaluate(name, seed)
            rows.append(row)
            with open(args.out, "a") as fh:
                fh.write(json.dumps(row) + "\n")
        nmi = [r["nmi"] for r in rows]
        r2 = [r["r2"] for r in rows]
        print(f"{name:22s} nmi mean {sum(nmi)/len(nmi):.3f} min {min(nmi):.3f}  r2 mean {sum(r2)/len(r2):.3f} "
              f"min {min(r2):.3f}  {sum(r['seconds'] for r in rows):.0f}s", flush=True)


if __name__ == "__main__":
    main()
