"""Presets: known starting points, each with a caption and the claims (as data) that its caption makes.

A claim is a measurable statement over training seeds, e.g. "mean NMI against the true regimes >= 0.8 over seeds
0-9". ``tests/test_presets.py`` trains every preset with a claim over seeds 0-9 and checks it, so a caption on the
Train page never says more than was measured. ``python -m kamoe_viz presets`` lists them; ``train --preset NAME``
starts from one (flags given on the command line still win).
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from kamoe_viz.config import RunConfig
from kamoe_viz.errors import KamoeError, ValidationError

if TYPE_CHECKING:
    from kamoe_viz.training.results import TrainResult

STATISTICS: dict[str, Callable[[Sequence[float]], float]] = {
    "mean": lambda values: sum(values) / len(values),
    "min": min,
    "max": max,
}
OPERATORS: dict[str, Callable[[float, float], bool]] = {">=": operator.ge, "<=": operator.le}
CLAIM_SEEDS = tuple(range(10))  # the seeds every claim is tested over (training seed; the data seed stays 0)
METRIC_NAMES = {
    "nmi": "NMI of the winning expert vs the true regime",
    "r2": "test R²",
    "accuracy": "test accuracy",
    "min_load": "smallest expert's share of rows (top-1)",
}


@dataclass(frozen=True)
class Claim:
    """``statistic`` of ``metric`` (a key of ``train --json``) over seeds ``op`` ``threshold``."""

    metric: str
    statistic: str
    op: str
    threshold: float

    def __post_init__(self) -> None:
        if self.statistic not in STATISTICS:
            raise ValidationError("claim.statistic", self.statistic, f"must be one of {', '.join(STATISTICS)}")
        if self.op not in OPERATORS:
            raise ValidationError("claim.op", self.op, f"must be one of {', '.join(OPERATORS)}")

    def value(self, values: Sequence[float]) -> float:
        return float(STATISTICS[self.statistic](values))

    def holds(self, values: Sequence[float]) -> bool:
        return bool(values) and OPERATORS[self.op](self.value(values), self.threshold)

    def describe(self) -> str:
        name = METRIC_NAMES.get(self.metric, self.metric)
        return f"{self.statistic} {name} over seeds {CLAIM_SEEDS[0]}-{CLAIM_SEEDS[-1]} {self.op} {self.threshold:g}"


@dataclass(frozen=True)
class Preset:
    name: str
    title: str
    caption: str
    dataset: str
    overrides: dict[str, dict[str, Any]]
    claims: tuple[Claim, ...] = field(default=())

    def config(self, seed: int | None = None) -> RunConfig:
        """The preset's RunConfig; ``seed`` sets the training seed (initialisation and shuffling)."""
        raw = RunConfig().to_dict()
        for section, values in self.overrides.items():
            raw[section].update(values)
        raw["data"]["name"] = self.dataset
        if seed is not None:
            raw["train"]["seed"] = seed
        return RunConfig.from_dict(raw)


_TRAIN_60 = {"epochs": 60, "lr": 3e-3, "early_stopping": 15}
# The mixture likelihood with a faster gate: each row's loss rewards sending it to the expert that predicts it
# best, which is what makes experts specialise (the MSE of the mixed prediction does not; see "MSE vs likelihood").
# It needs ~130 epochs, and about a third of initialisations settle on a misplaced regime boundary, which already
# shows in the validation loss after 40 epochs: so 150 epochs from the best of 8 initialisations tried for 40 each
# (scripts/specialisation_findings.md).
_SPECIALISE = {
    "epochs": 150,
    "lr": 3e-3,
    "early_stopping": 30,
    "objective": "likelihood",
    "gate_lr_scale": 5.0,
    "balance_loss": 0.01,
    "restarts": 8,
    "restart_epochs": 40,
}
_REGIMES_MODEL = {"gate": "grkan", "gate_activation": "softmax", "n_experts": 3, "expert_hidden": [32]}

PRESET_LIST: tuple[Preset, ...] = (
    Preset(
        "regimes",
        "Three regimes",
        "Three regimes, three experts, trained on the mixture likelihood with a 5x faster gate, from the best "
        "of 8 initialisations (40 epochs each, chosen by validation loss): each expert takes one regime "
        "(NMI against the true regimes on the Gates page, at least 0.9 on average over seeds).",
        "regimes",
        {"model": _REGIMES_MODEL, "train": _SPECIALISE},
        (Claim("nmi", "mean", ">=", 0.9), Claim("nmi", "min", ">=", 0.75), Claim("r2", "mean", ">=", 0.95)),
    ),
    Preset(
        "top1",
        "Top-1 routing",
        "Switch top-1 routing (capacity factor 2) with the balance loss (0.1), trained like Three regimes (mixture "
        "likelihood, 5x faster gate, best of 8 initialisations): every row goes to exactly one expert, every "
        "expert keeps at least a tenth of the rows in every seed, and each expert takes one regime.",
        "regimes",
        {
            "model": {**_REGIMES_MODEL, "routing": "switch", "capacity_factor": 2.0},
            "train": {**_SPECIALISE, "balance_loss": 0.1},
        },
        (Claim("min_load", "min", ">=", 0.10), Claim("nmi", "mean", ">=", 0.9), Claim("r2", "mean", ">=", 0.93)),
    ),
    Preset(
        "moons",
        "Moons · GRKAN",
        "Two interleaved half-moons, two KAN experts behind a GRKAN gate: the moons are classified (accuracy "
        "at least 0.95 in every seed); either expert could do it alone, and in some seeds one does, so look "
        "at the region map to see how the gate split the plane this time.",
        "moons",
        {
            "model": {
                "gate": "grkan",
                "gate_activation": "softmax",
                "n_experts": 2,
                "expert": "kan",
                "expert_hidden": [8],
                "kan_grid": 5,
            },
            "train": {"epochs": 60, "lr": 1e-2, "early_stopping": 15},
        },
        (Claim("accuracy", "min", ">=", 0.95),),
    ),
    Preset(
        "series",
        "Series · LSTM",
        "A series that switches between regimes: LSTM experts on windows with a GRKAN gate. One window rarely "
        "reveals its regime, so expect shared, not specialised, experts.",
        "regime_series",
        {
            "model": {
                "gate": "grkan",
                "gate_activation": "softmax",
                "n_experts": 3,
                "expert": "lstm",
                "expert_hidden": [16],
            },
            "train": {"epochs": 30, "lr": 3e-3, "early_stopping": 10},
        },
    ),
    Preset(
        "california",
        "California (paper)",
        "The paper's setting on California housing: GRKAN gate, sigmoid, 3 MLP experts of 100 units, Adam 1e-3.",
        "california",
        {},
    ),
    Preset(
        "collapse",
        "Collapse",
        "Top-1 routing trained on the mixed prediction's MSE with no balancing: one expert is nearly starved "
        "(on average the least-used expert takes under an eighth of the rows). Compare with Top-1 routing, "
        "which adds the balance loss and the likelihood objective.",
        "regimes",
        {"model": {**_REGIMES_MODEL, "routing": "topk", "top_k": 1}, "train": _TRAIN_60},
        (Claim("min_load", "mean", "<=", 0.12),),
    ),
    Preset(
        "bias_balance",
        "Bias balancing",
        "DeepSeek-V3 style: sigmoid affinities with a per-expert bias nudged after every step toward equal "
        "load, no auxiliary loss, top-1, trained on the mixture likelihood: every expert keeps at least a "
        "quarter of the rows in every seed and most seeds give each expert one regime, with a lower R² than "
        "the soft mixture of Three regimes. Compare its load bars with Top-1 routing's balance loss.",
        "regimes",
        {
            "model": {**_REGIMES_MODEL, "routing": "sigmoid_bias", "top_k": 1, "bias_update_rate": 0.01},
            "train": {**_TRAIN_60, "objective": "likelihood", "gate_lr_scale": 5.0},
        },
        (Claim("min_load", "min", ">=", 0.25), Claim("nmi", "mean", ">=", 0.8), Claim("r2", "mean", ">=", 0.85)),
    ),
    Preset(
        "expert_choice",
        "Expert choice",
        "Each expert picks its top rows of the batch (capacity 1.25), so some rows get no expert or several "
        "(coverage on the Gates page) and predictions depend on the batch; every expert stays in use.",
        "regimes",
        {"model": {**_REGIMES_MODEL, "routing": "expert_choice", "capacity_factor": 1.25}, "train": _TRAIN_60},
        (Claim("min_load", "min", ">=", 0.18), Claim("r2", "mean", ">=", 0.88)),
    ),
    Preset(
        "mse",
        "MSE objective",
        "Three regimes trained on the MSE of the mixed prediction, as most MoE code does: the experts fit well "
        "together but rarely one regime each. Compare its NMI with Three regimes (the likelihood objective).",
        "regimes",
        {"model": _REGIMES_MODEL, "train": _TRAIN_60},
        (Claim("nmi", "mean", "<=", 0.6), Claim("r2", "mean", ">=", 0.9)),
    ),
)
PRESETS: dict[str, Preset] = {p.name: p for p in PRESET_LIST}


OPENING_PRESET = "regimes"  # what the app opens with: the first click shows experts taking one regime each


def opening_config() -> RunConfig:
    """The settings the app opens with (:data:`OPENING_PRESET`, seed 0)."""
    return preset_config(OPENING_PRESET)


def get_preset(name: str) -> Preset:
    if name not in PRESETS:
        raise ValidationError(
            "preset", name, f"must be one of {', '.join(PRESETS)} (see `python -m kamoe_viz presets`)"
        )
    return PRESETS[name]


def preset_config(name: str, seed: int | None = None) -> RunConfig:
    return get_preset(name).config(seed)


def available_presets(dataset_names: Sequence[str]) -> list[Preset]:
    """The presets whose dataset is available (California needs its CSV or a download)."""
    return [p for p in PRESET_LIST if p.dataset in dataset_names]


def _settings(config: RunConfig) -> dict[str, Any]:
    """A configuration without what a preset leaves to the user (the seeds, the device)."""
    raw = config.to_dict()
    for section, key in (("data", "seed"), ("train", "seed"), ("train", "device")):
        raw[section].pop(key, None)
    try:  # options at their defaults are the same settings, whether written out (as the app does) or not
        from kamoe_viz.data.registry import dataset_info, validate_options

        info = dataset_info(config.data.name)
        defaults = {key: spec.default for key, spec in info.options.items()}
        raw["data"]["options"] = {**defaults, **validate_options(info, dict(config.data.options))}
    except KamoeError:
        pass  # an uploaded file or unknown dataset: compared as written
    return raw


def preset_of(config: RunConfig) -> Preset | None:
    """The preset whose settings ``config`` has (any seed and device), or None."""
    settings = _settings(config)
    return next((p for p in PRESET_LIST if _settings(p.config()) == settings), None)


def claims_budget_note(config: RunConfig) -> str | None:
    """For a run of a preset with claims: that they hold for its epoch budget, which an epoch-cap notice's
    "more epochs may help" would otherwise invite the user to change. None for other runs."""
    preset = preset_of(config)
    if preset is None or not preset.claims:
        return None
    return (
        f"The {preset.title} preset's claims are measured with exactly this budget ({config.train.epochs} "
        "epochs, over seeds 0-9); with more epochs it may show something else."
    )


def run_epoch_cap_notice(result: TrainResult, config: RunConfig) -> str | None:
    """:func:`kamoe_viz.training.results.epoch_cap_notice` for a finished run, with :func:`claims_budget_note`
    added when the run is a preset's (what the Train page and ``train`` print)."""
    from kamoe_viz.training.results import epoch_cap_notice

    notice = epoch_cap_notice(result, config.train)
    note = claims_budget_note(config) if notice else None
    return f"{notice} {note}" if note else notice


def measure(config: RunConfig) -> dict[str, Any]:
    """Train one configuration and return what claims can name: the test metrics plus the routing metrics
    (``train --json``'s keys)."""
    from kamoe_viz.training.evaluation import routing_report
    from kamoe_viz.training.pipeline import train_run

    run = train_run(config)
    return {**run.result.metrics, **routing_report(run)}


def _measure_on_one_thread(config: RunConfig) -> dict[str, Any]:
    """:func:`measure` in a worker process, on one torch thread as the tests and the README's figures are."""
    import torch

    torch.set_num_threads(1)
    return measure(config)


def check_claims(preset: Preset, seeds: Sequence[int] = CLAIM_SEEDS, jobs: int = 1) -> list[tuple[Claim, float, bool]]:
    """Train ``preset`` at each seed; for each claim, its measured value and whether it holds. ``jobs`` > 1 trains
    that many seeds at a time in worker processes (one torch thread each; the values are the same)."""
    configs = [preset.config(seed) for seed in seeds]
    if jobs > 1 and len(configs) > 1:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(min(jobs, len(configs)), mp_context=multiprocessing.get_context("spawn")) as pool:
            rows = list(pool.map(_measure_on_one_thread, configs))
    else:
        rows = [measure(config) for config in configs]
    out = []
    for claim in preset.claims:
        values = [float(r[claim.metric]) for r in rows]
        out.append((claim, claim.value(values), claim.holds(values)))
    return out
