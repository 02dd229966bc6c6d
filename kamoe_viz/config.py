"""Run settings: dataset, model and training, as plain dataclasses.

A :class:`RunConfig` is the single description of a run. It round-trips through a dict (saved runs, JSON) and
through flat string parameters (the app's shareable URL), and it is validated once, here, at the boundary:
every bad value raises :class:`~kamoe_viz.errors.ValidationError` naming the field, the value and what is allowed.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from kamoe_viz.errors import ValidationError
from kamoe_viz.link_values import decode_field, decode_scalar, encode_value
from kamoe_viz.routing_specs import ROUTERS

GATE_FAMILIES = ("linear", "grn", "grkan")
GATE_ACTIVATIONS = ("sigmoid", "softmax")
EXPERT_TYPES = ("mlp", "kan", "lstm", "gru")
SEQUENTIAL_EXPERTS = ("lstm", "gru")
MODEL_KINDS = ("moe", "standard")
BASE_ACTIVATIONS = ("silu", "relu", "elu", "identity")
DEVICES = ("auto", "cpu", "cuda", "mps")

MAX_EXPERTS = 16
MAX_WIDTH = 1024
MAX_LAYERS = 6
MAX_EPOCHS = 10_000

# Routing: each router's definition is in kamoe_viz.routing_specs.ROUTERS
ROUTINGS = tuple(ROUTERS)
TOP_K_ROUTINGS = tuple(name for name, spec in ROUTERS.items() if "top_k" in spec.options)
OBJECTIVES = ("mse", "likelihood")
CAPACITY_FACTOR_RANGE = (0.1, 16.0)
MAX_SHARED_EXPERTS = 8
BIAS_UPDATE_RATE_RANGE = (0.0, 1.0)
BALANCE_LOSS_RANGE = (0.0, 100.0)
Z_LOSS_RANGE = (0.0, 100.0)
GATE_LR_SCALE_RANGE = (0.01, 1000.0)
MAX_RESTARTS = 10  # train.restarts: initialisations tried before training (kamoe_viz.training.restarts)


def _check_int(section: str, name: str, value: Any, low: int, high: int) -> int:
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or (isinstance(value, float) and not value.is_integer())
    ):
        raise ValidationError(f"{section}.{name}", value, f"must be an integer from {low} to {high}")
    value = int(value)
    if not low <= value <= high:
        raise ValidationError(f"{section}.{name}", value, f"must be an integer from {low} to {high}")
    return value


def _check_float(section: str, name: str, value: Any, low: float, high: float, *, open_low: bool = False) -> float:
    allowed = f"must be a number {'>' if open_low else '>='} {low:g} and <= {high:g}"
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValidationError(f"{section}.{name}", value, allowed)
    try:
        value = float(value)  # a huge int (10**400) overflows here
    except OverflowError:
        raise ValidationError(f"{section}.{name}", value, allowed) from None
    if not math.isfinite(value):
        raise ValidationError(f"{section}.{name}", value, allowed)
    if value > high or value < low or (open_low and value == low):
        raise ValidationError(f"{section}.{name}", value, allowed)
    return value


def _check_choice(section: str, name: str, value: Any, choices: tuple[str, ...]) -> str:
    if value not in choices:
        raise ValidationError(f"{section}.{name}", value, f"must be one of {', '.join(choices)}")
    return value


@dataclass
class DataConfig:
    """Which data, how it is split. ``options`` holds the dataset's own settings (noise, size, window...)."""

    name: str = "regimes"
    options: dict[str, Any] = field(default_factory=dict)
    seed: int = 0
    test_fraction: float = 0.2
    val_fraction: float = 0.2  # of what remains after the test split
    csv_path: str | None = None
    target: str | None = None
    features: tuple[str, ...] | None = None

    def validate(self) -> DataConfig:
        if not isinstance(self.name, str) or not self.name.strip():
            raise ValidationError("data.name", self.name, "must be a dataset name (see `python -m kamoe_viz datasets`)")
        if not isinstance(self.options, dict):
            raise ValidationError("data.options", self.options, "must be a mapping of option name to value")
        self.seed = _check_int("data", "seed", self.seed, 0, 2**31 - 1)
        self.test_fraction = _check_float("data", "test_fraction", self.test_fraction, 0.05, 0.5)
        self.val_fraction = _check_float("data", "val_fraction", self.val_fraction, 0.05, 0.5)
        if self.features is not None:
            self.features = tuple(self.features)
        return self


@dataclass
class ModelConfig:
    """The mixture: gate family, experts, KAN settings. Defaults are the reference California configuration."""

    kind: str = "moe"
    gate: str = "grkan"
    gate_activation: str = "sigmoid"
    top_k: int = 0  # experts per row for the topk, noisy_topk and sigmoid_bias routers
    routing: str = "dense"  # a key of kamoe_viz.nn.routers.ROUTERS
    capacity_factor: float = 1.25  # switch, expert_choice: capacity = ceil(capacity_factor * rows / experts)
    shared_experts: int = 0  # always-on experts beside the routed ones (DeepSeekMoE)
    bias_update_rate: float = 0.001  # sigmoid_bias: u in b_i += u * sign(mean load - load_i)
    n_experts: int = 3
    expert: str = "mlp"
    expert_hidden: tuple[int, ...] = (100,)
    gate_hidden: int = 0  # width u of h = ReLU(Dense(x~)); 0 = the expert output width, as the reference
    kan_grid: int = 3
    kan_order: int = 3
    kan_range: tuple[float, float] = (-1.0, 1.0)
    kan_base: str = "relu"  # base activation of KAN experts (reference default)
    grkan_second_base: str = "relu"  # reference code; the paper describes SiLU
    dropout: float = 0.0
    input_scaling: bool = True
    return_sequences: bool = False

    def validate(self) -> ModelConfig:
        s = "model"
        _check_choice(s, "kind", self.kind, MODEL_KINDS)
        _check_choice(s, "gate", self.gate, GATE_FAMILIES)
        _check_choice(s, "gate_activation", self.gate_activation, GATE_ACTIVATIONS)
        _check_choice(s, "expert", self.expert, EXPERT_TYPES)
        _check_choice(s, "kan_base", self.kan_base, BASE_ACTIVATIONS)
        _check_choice(s, "grkan_second_base", self.grkan_second_base, BASE_ACTIVATIONS)
        self.n_experts = _check_int(s, "n_experts", self.n_experts, 1, MAX_EXPERTS)
        self.top_k = _check_int(s, "top_k", self.top_k, 0, MAX_EXPERTS)
        if self.top_k > self.n_experts:
            raise ValidationError(
                "model.top_k", self.top_k, f"must be 0 (off) or at most model.n_experts ({self.n_experts})"
            )
        if self.routing == "dense" and self.top_k > 0:
            self.routing = "topk"  # settings from before routing was its own field: top_k > 0 meant top-k routing
        _check_choice(s, "routing", self.routing, ROUTINGS)
        if self.routing in TOP_K_ROUTINGS and self.top_k == 0:  # the router lacks its k (0 is top_k's default)
            raise ValidationError(
                "model.routing",
                self.routing,
                f"needs model.top_k from 1 to model.n_experts ({self.n_experts}), the experts per row",
            )
        self.capacity_factor = _check_float(s, "capacity_factor", self.capacity_factor, *CAPACITY_FACTOR_RANGE)
        self.shared_experts = _check_int(s, "shared_experts", self.shared_experts, 0, MAX_SHARED_EXPERTS)
        self.bias_update_rate = _check_float(s, "bias_update_rate", self.bias_update_rate, *BIAS_UPDATE_RATE_RANGE)
        hidden = self.expert_hidden
        if isinstance(hidden, (int, float)) and not isinstance(hidden, bool):
            hidden = (hidden,)
        if not isinstance(hidden, (list, tuple)) or not 1 <= len(hidden) <= MAX_LAYERS:
            raise ValidationError(s + ".expert_hidden", hidden, f"must be 1 to {MAX_LAYERS} layer widths")
        try:
            self.expert_hidden = tuple(_check_int(s, "expert_hidden", h, 1, MAX_WIDTH) for h in hidden)
        except ValidationError as err:  # name the list, not one number of it
            raise ValidationError(
                s + ".expert_hidden",
                hidden,
                f"each width must be an integer from 1 to {MAX_WIDTH} (got {err.value!r} among them)",
            ) from None
        self.gate_hidden = _check_int(s, "gate_hidden", self.gate_hidden, 0, MAX_WIDTH)
        self.kan_grid = _check_int(s, "kan_grid", self.kan_grid, 1, 50)
        self.kan_order = _check_int(s, "kan_order", self.kan_order, 1, 5)
        rng = self.kan_range
        if not isinstance(rng, (list, tuple)) or len(rng) != 2:
            raise ValidationError(s + ".kan_range", rng, "must be two numbers low, high with low < high")
        low = _check_float(s, "kan_range", rng[0], -1e3, 1e3)
        high = _check_float(s, "kan_range", rng[1], -1e3, 1e3)
        if not low < high:
            raise ValidationError(s + ".kan_range", rng, "must be two numbers low, high with low < high")
        self.kan_range = (low, high)
        self.dropout = _check_float(s, "dropout", self.dropout, 0.0, 0.9)
        if not isinstance(self.input_scaling, bool):
            raise ValidationError(s + ".input_scaling", self.input_scaling, "must be true or false")
        if not isinstance(self.return_sequences, bool):
            raise ValidationError(s + ".return_sequences", self.return_sequences, "must be true or false")
        return self


@dataclass
class TrainConfig:
    """Optimiser and schedule. Defaults follow the reference: Adam 1e-3, batch 128, plateau LR reduction."""

    epochs: int = 100
    batch_size: int = 128
    lr: float = 1e-3
    weight_decay: float = 0.0
    early_stopping: int = 20  # patience in epochs; 0 = off
    lr_patience: int = 10
    lr_factor: float = 0.25
    min_lr: float = 2.5e-5
    max_grad_norm: float = 0.0  # 0 = no clipping
    seed: int = 0
    device: str = "auto"
    balance_loss: float = 0.0  # weight alpha of the Switch auxiliary loss alpha * E * sum_i f_i * P_i; 0 = off
    z_loss: float = 0.0  # weight of the router z-loss mean(logsumexp(logits)^2) (ST-MoE); 0 = off
    objective: str = "mse"  # "likelihood": the mixture likelihood of Jacobs et al. 1991 instead of the task loss
    gate_lr_scale: float = 1.0  # the gate's (and router's) learning rate is lr * gate_lr_scale
    restarts: int = 1  # initialisations tried, each for restart_epochs; the best by validation loss trains; 1 = off
    restart_epochs: int = 20  # epochs each restart trains before they are compared

    def validate(self) -> TrainConfig:
        s = "train"
        self.epochs = _check_int(s, "epochs", self.epochs, 1, MAX_EPOCHS)
        self.batch_size = _check_int(s, "batch_size", self.batch_size, 1, 65_536)
        self.lr = _check_float(s, "lr", self.lr, 0.0, 10.0, open_low=True)
        self.weight_decay = _check_float(s, "weight_decay", self.weight_decay, 0.0, 1.0)
        self.early_stopping = _check_int(s, "early_stopping", self.early_stopping, 0, MAX_EPOCHS)
        self.lr_patience = _check_int(s, "lr_patience", self.lr_patience, 0, MAX_EPOCHS)
        self.lr_factor = _check_float(s, "lr_factor", self.lr_factor, 0.0, 1.0, open_low=True)
        self.min_lr = _check_float(s, "min_lr", self.min_lr, 0.0, 10.0)
        self.max_grad_norm = _check_float(s, "max_grad_norm", self.max_grad_norm, 0.0, 1e6)
        self.seed = _check_int(s, "seed", self.seed, 0, 2**31 - 1)
        _check_choice(s, "device", self.device, DEVICES)
        self.balance_loss = _check_float(s, "balance_loss", self.balance_loss, *BALANCE_LOSS_RANGE)
        self.z_loss = _check_float(s, "z_loss", self.z_loss, *Z_LOSS_RANGE)
        _check_choice(s, "objective", self.objective, OBJECTIVES)
        self.gate_lr_scale = _check_float(s, "gate_lr_scale", self.gate_lr_scale, *GATE_LR_SCALE_RANGE)
        self.restarts = _check_int(s, "restarts", self.restarts, 1, MAX_RESTARTS)
        self.restart_epochs = _check_int(s, "restart_epochs", self.restart_epochs, 1, MAX_EPOCHS)
        return self


_NOT_IN_LINKS = ("csv_path",)
_SECTIONS = {"data": DataConfig, "model": ModelConfig, "train": TrainConfig}


@dataclass
class RunConfig:
    """Everything that defines a run; JSON- and URL-serialisable."""

    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def validate(self) -> RunConfig:
        self.data.validate()
        self.model.validate()
        self.train.validate()
        return self

    # ----- dict / JSON -------------------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return json.loads(json.dumps(dataclasses.asdict(self)))

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> RunConfig:
        """Build and validate from a dict; unknown sections or fields are refused by name."""
        if not isinstance(raw, Mapping):
            raise ValidationError("config", raw, "must be a mapping with sections data, model, train")
        unknown = set(raw) - set(_SECTIONS)
        if unknown:
            raise ValidationError("config", sorted(unknown)[0], "unknown section; allowed: data, model, train")
        sections = {}
        for name, section_cls in _SECTIONS.items():
            values = raw.get(name, {}) or {}
            if not isinstance(values, Mapping):
                raise ValidationError(name, values, "must be a mapping of field to value")
            known = {f.name for f in dataclasses.fields(section_cls)}
            bad = set(values) - known
            if bad:
                raise ValidationError(
                    f"{name}.{sorted(bad)[0]}",
                    values[sorted(bad)[0]],
                    f"unknown field; allowed: {', '.join(sorted(known))}",
                )
            kwargs = dict(values)
            for key in ("expert_hidden", "kan_range", "features"):
                if isinstance(kwargs.get(key), list):
                    kwargs[key] = tuple(kwargs[key])
            sections[name] = section_cls(**kwargs)
        return cls(**sections).validate()

    @classmethod
    def problems(cls, raw: Mapping[str, Any], limit: int = 10) -> list[str]:
        """Every problem of ``raw`` at once (``from_dict`` stops at the first), for a form that shows them all:
        each bad field is reported, then set to its default to look for the next. Empty when ``raw`` is valid."""
        import copy

        work = copy.deepcopy(dict(raw)) if isinstance(raw, Mapping) else raw
        found: list[str] = []
        for _ in range(limit):
            try:
                cls.from_dict(work)
                return found
            except ValidationError as err:
                found.append(str(err))
                section, _, name = err.field.partition(".")
                defaults = _SECTIONS.get(section)
                values = work.get(section) if isinstance(work, dict) else None
                if defaults is None or not isinstance(values, dict) or name not in values:
                    return found
                if name in {f.name for f in dataclasses.fields(defaults)}:
                    values[name] = getattr(defaults(), name)
                else:
                    values.pop(name)
        return found

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    # ----- flat string parameters (URL query) -------------------------------------------------------------------
    def to_query_params(self) -> dict[str, str]:
        """Flat ``section.field`` -> string; only values that differ from the defaults, so links stay short.

        File paths (``csv_path``) never go into a link: a link must not make the server read one of its files.
        """
        default = RunConfig().to_dict()
        current = self.to_dict()
        params: dict[str, str] = {}
        for section, values in current.items():
            for key, value in values.items():
                if key in _NOT_IN_LINKS:
                    continue
                if key == "options":
                    for opt, opt_value in sorted(value.items()):
                        if opt not in _NOT_IN_LINKS:
                            params[f"{section}.options.{opt}"] = encode_value(opt_value)
                elif value != default[section][key]:
                    params[f"{section}.{key}"] = encode_value(value)
        return params

    @classmethod
    def from_query_params(cls, params: Mapping[str, str]) -> RunConfig:
        """Inverse of :meth:`to_query_params`; every value is parsed and validated, unknown keys are refused."""
        defaults = RunConfig()
        raw: dict[str, dict[str, Any]] = {name: {} for name in _SECTIONS}
        for key, text in params.items():
            parts = str(key).split(".")
            if len(parts) < 2 or parts[0] not in _SECTIONS:
                raise ValidationError(f"link parameter {key}", text, "is not a known setting")
            section = parts[0]
            if parts[-1] in _NOT_IN_LINKS:
                raise ValidationError(
                    f"link parameter {key}",
                    text,
                    "file paths are not accepted in links",
                    "Upload the CSV on the Train page instead.",
                )
            if parts[1] == "options" and section == "data" and len(parts) == 3:
                raw["data"].setdefault("options", {})[parts[2]] = decode_scalar(str(text))
                continue
            if len(parts) != 2:
                raise ValidationError(f"link parameter {key}", text, "is not a known setting")
            name = parts[1]
            fields = {f.name: f for f in dataclasses.fields(_SECTIONS[section])}
            if name not in fields or name == "options":
                raise ValidationError(f"link parameter {key}", text, "is not a known setting")
            default_value = getattr(getattr(defaults, section), name)
            raw[section][name] = decode_field(f"{section}.{name}", str(text), default_value, name)
        return cls.from_dict(raw)
