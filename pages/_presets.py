"""Known-good starting points for the Train page, each with one sentence on what it shows."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from kamoe_viz.config import RunConfig


@dataclass(frozen=True)
class Preset:
    key: str
    title: str
    sentence: str
    dataset: str
    overrides: dict[str, dict[str, Any]]

    def config(self) -> RunConfig:
        raw = RunConfig().to_dict()
        for section, values in self.overrides.items():
            raw[section].update(values)
        raw["data"]["name"] = self.dataset
        return RunConfig.from_dict(raw)


PRESETS = [
    Preset("regimes", "Three regimes",
           "Three regimes, three experts: watch each expert take one (softmax gate, so loads are shares).",
           "regimes", {"model": {"gate": "grkan", "gate_activation": "softmax", "n_experts": 3,
                                 "expert_hidden": [32]},
                       "train": {"epochs": 60, "lr": 3e-3, "early_stopping": 15}}),
    Preset("moons", "Moons · GRKAN",
           "Two interleaved half-moons: a GRKAN gate splits the plane between two KAN experts.",
           "moons", {"model": {"gate": "grkan", "gate_activation": "softmax", "n_experts": 2, "expert": "kan",
                               "expert_hidden": [8], "kan_grid": 5},
                     "train": {"epochs": 60, "lr": 1e-2, "early_stopping": 15}}),
    Preset("top1", "Top-1 routing",
           "Top-1 routing: every input goes to exactly one expert, so the gate must commit.",
           "regimes", {"model": {"gate": "grn", "gate_activation": "softmax", "n_experts": 3, "top_k": 1,
                                 "expert_hidden": [32]},
                       "train": {"epochs": 60, "lr": 3e-3, "early_stopping": 15}}),
    Preset("series", "Series · LSTM",
           "A time series that switches between regimes: LSTM experts on windows, a GRKAN gate picks one per window.",
           "regime_series", {"model": {"gate": "grkan", "gate_activation": "softmax", "n_experts": 3, "expert": "lstm",
                                       "expert_hidden": [16]},
                             "train": {"epochs": 30, "lr": 3e-3, "early_stopping": 10}}),
    Preset("california", "California (paper)",
           "The paper's setting on California housing: GRKAN gate, sigmoid, 3 MLP experts of 100 units, Adam 1e-3.",
           "california", {}),
]


def available_presets(dataset_names: list[str]) -> list[Preset]:
    return [p for p in PRESETS if p.dataset in dataset_names]
