"""What one setting may cost, computed from the config by arithmetic before anything is built.

Every value of a :class:`~kamoe_viz.config.ModelConfig` can be inside its own bounds while their product is not: 16
KAN experts of six 1024-wide layers with grid 50 and order 5 are 4.7 billion parameters. :func:`check_model` refuses
such a model before a tensor is allocated (``build_model`` calls it), and :func:`check_training` adds the training
memory of a batch. The limits are the server's: env ``KAMOE_MAX_PARAMS`` / ``KAMOE_MAX_MEMORY_MB`` (or the app's
``--max-params`` / ``--max-memory-mb`` flags, or the CLI's) raise them.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from itertools import pairwise
from typing import TYPE_CHECKING, Any

from kamoe_viz.errors import ValidationError

if TYPE_CHECKING:
    from kamoe_viz.config import RunConfig
    from kamoe_viz.data.base import Dataset

ENV_MAX_PARAMS = "KAMOE_MAX_PARAMS"
ENV_MAX_MEMORY_MB = "KAMOE_MAX_MEMORY_MB"
DEFAULT_MAX_PARAMS = 20_000_000
DEFAULT_MAX_MEMORY_MB = 4096
BYTES_PER_VALUE = 4  # float32
STATE_COPIES = 4  # weights, gradients and Adam's two moments
ACTIVATION_COPIES = 3  # values kept for the backward pass and their gradients, roughly
_RECURRENT_GATES = {"lstm": 4, "gru": 3}


@dataclass(frozen=True)
class Cost:
    """Arithmetic estimate of a model: parameters, and training memory in MB for the given batch size."""

    params: int
    gate_params: int
    memory_mb: float
    activations_per_row: int


def _kan(i: int, o: int, n_basis: int, bias: bool = False) -> int:
    return o * i * (1 + n_basis) + (o if bias else 0)


def _bank(
    expert: str, in_features: int, n: int, hidden: tuple[int, ...], n_basis: int, seq_len: int | None
) -> tuple[int, int]:
    """(parameters, activations per row) of ``n`` experts of one type."""
    if n == 0:
        return 0, 0
    if expert == "mlp":
        params = in_features * n * hidden[0] + n * hidden[0]
        params += n * sum(a * b + b for a, b in pairwise(hidden))
        return params, n * sum(hidden)
    if expert == "kan":
        params = _kan(in_features, n * hidden[0], n_basis)
        params += n * sum(_kan(a, b, n_basis) for a, b in pairwise(hidden))
        acts = in_features * (n_basis + 1) + n * hidden[0] + n * sum(a * (n_basis + 1) + b for a, b in pairwise(hidden))
        return params, acts
    gates = _RECURRENT_GATES[expert]
    widths = (in_features, *hidden)
    params = n * sum(gates * (a * b + b * b + 2 * b) for a, b in pairwise(widths))
    return params, (seq_len or 1) * n * sum(gates * b for b in hidden)


def _gate(family: str, u: int, e: int, n_basis: int) -> int:
    if family == "linear":
        return u * e + e
    residual = (u * e + e) + (e * 2 * e + 2 * e) + 2 * e  # skip, GLU, LayerNorm
    if family == "grn":
        return residual + (u * e + e) + (e * e + e)
    return residual + _kan(u, e, n_basis) + _kan(e, e, n_basis)


def estimate(config: Any, n_features: int, n_outputs: int, seq_len: int | None = None, batch_size: int = 1) -> Cost:
    """Parameters (as ``KAMoE.parameter_count()`` counts them) and training memory, from the numbers alone."""
    standard = config.kind == "standard"
    n = 1 if standard else config.n_experts
    shared = 0 if standard else int(getattr(config, "shared_experts", 0) or 0)
    recurrent = config.expert in _RECURRENT_GATES
    expert_in = n_features * seq_len if (seq_len is not None and not recurrent) else n_features
    hidden = tuple(config.expert_hidden)
    n_basis = config.kan_grid + config.kan_order
    params, acts = _bank(config.expert, expert_in, n, hidden, n_basis, seq_len)
    shared_params, shared_acts = _bank(config.expert, expert_in, shared, hidden, n_basis, seq_len)
    params += shared_params
    acts += shared_acts
    width = hidden[-1]
    gate = 0
    if not standard:
        u = config.gate_hidden or width
        params += n_features if config.input_scaling else 0
        params += expert_in * u + u  # the gate's input layer h = ReLU(Dense(x~))
        gate = _gate(config.gate, u, n, n_basis)
        if getattr(config, "routing", "dense") == "noisy_topk":
            gate += n * n + n
        params += gate
        acts += u + 4 * n
    params += width * n_outputs + n_outputs
    memory = BYTES_PER_VALUE * (STATE_COPIES * params + ACTIVATION_COPIES * acts * max(1, batch_size))
    return Cost(params=params, gate_params=gate, memory_mb=memory / 1024**2, activations_per_row=acts)


def limits(environ: Mapping[str, str] = os.environ) -> tuple[int, int]:
    """(largest parameter count, largest memory estimate in MB) this server allows."""

    def read(name: str, default: int) -> int:
        text = (environ.get(name) or "").strip()
        if not text:
            return default
        try:
            value = int(float(text))
        except ValueError:
            raise ValidationError(name, text, "must be a positive whole number") from None
        if value < 1:
            raise ValidationError(name, text, "must be a positive whole number")
        return value

    return read(ENV_MAX_PARAMS, DEFAULT_MAX_PARAMS), read(ENV_MAX_MEMORY_MB, DEFAULT_MAX_MEMORY_MB)


def _settings_to_lower(config: Any, seq_len: int | None, batch: bool) -> str:
    names = [] if config.kind == "standard" else [f"model.n_experts ({config.n_experts})"]
    names.append(f"model.expert_hidden ({','.join(map(str, config.expert_hidden))})")
    if config.expert == "kan" or (config.kind != "standard" and config.gate == "grkan"):
        names.append(f"model.kan_grid ({config.kan_grid})")
        names.append(f"model.kan_order ({config.kan_order})")
    if getattr(config, "shared_experts", 0):
        names.append(f"model.shared_experts ({config.shared_experts})")
    if config.kind != "standard" and config.gate_hidden:
        names.append(f"model.gate_hidden ({config.gate_hidden})")
    if seq_len is not None:
        names.append(f"the dataset's window ({seq_len})")
    return ", ".join(names) + (", train.batch_size" if batch else "")


def _human(count: float) -> str:
    for size, word in ((1e9, "billion"), (1e6, "million"), (1e3, "thousand")):
        if count >= size:
            return f"{count / size:.3g} {word}"
    return f"{count:g}"


def check_model(
    config: Any,
    n_features: int,
    n_outputs: int,
    seq_len: int | None = None,
    batch_size: int = 1,
    environ: Mapping[str, str] = os.environ,
) -> Cost:
    """The estimate, or :class:`ValidationError` naming the settings to lower when it is over the limits."""
    cost = estimate(config, n_features, n_outputs, seq_len, batch_size)
    max_params, max_mb = limits(environ)
    if cost.params > max_params:
        raise ValidationError(
            "model",
            f"{_human(cost.params)} parameters",
            f"must have at most {_human(max_params)} parameters on this server",
            f"Lower {_settings_to_lower(config, seq_len, False)}; whoever runs the server can raise the limit "
            f"({ENV_MAX_PARAMS} or --max-params).",
        )
    if cost.memory_mb > max_mb:
        raise ValidationError(
            "model",
            f"about {cost.memory_mb:,.0f} MB to train",
            f"must need at most {max_mb:,} MB on this server",
            f"Lower {_settings_to_lower(config, seq_len, batch_size > 1)}; whoever runs the server can raise the "
            f"limit ({ENV_MAX_MEMORY_MB} or --max-memory-mb).",
        )
    return cost


def check_training(config: RunConfig, dataset: Dataset, environ: Mapping[str, str] = os.environ) -> Cost:
    """:func:`check_model` for a RunConfig on a dataset, with the training batch (at most the training rows)."""
    rows = len(getattr(dataset, "X_train", ())) or config.train.batch_size
    return check_model(
        config.model,
        dataset.n_features,
        dataset.n_outputs,
        dataset.seq_len,
        min(config.train.batch_size, rows),
        environ,
    )


def check_buildable(config: RunConfig, dataset: Dataset, environ: Mapping[str, str] = os.environ) -> Cost:
    """:func:`check_training`, then the model built on PyTorch's meta device (shapes only, no memory), so that
    combinations the layers refuse are reported before training; the Train page's preflight."""
    import torch

    from kamoe_viz.nn import build_model

    cost = check_training(config, dataset, environ)
    with torch.device("meta"):
        build_model(config.model, dataset)
    return cost
