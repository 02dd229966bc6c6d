"""The configuration a comparison form describes: the Train page's data and model, the form's sizes, and, when
asked, the Train page's training recipe (objective, gate learning rate, restarts, auxiliary losses).

A comparison that drops the recipe of, say, the Three regimes preset compares gates under the task loss, where
experts do not specialise; keeping it compares them under the training the preset's claims are measured with.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from kamoe_viz.config import DataConfig, ModelConfig, RunConfig, TrainConfig
from kamoe_viz.errors import ValidationError

# train.* settings that make up how a model is trained, beyond the form's own epochs, learning rate and patience
RECIPE_FIELDS = (
    "objective",
    "gate_lr_scale",
    "restarts",
    "restart_epochs",
    "balance_loss",
    "z_loss",
    "weight_decay",
    "max_grad_norm",
    "lr_patience",
    "lr_factor",
    "min_lr",
)


def parse_widths(text: str) -> tuple[int, ...]:
    """``"32,16"`` -> (32, 16); a clear message for anything else."""
    try:
        widths = tuple(int(p) for p in str(text).replace(";", ",").split(",") if p.strip())
    except ValueError:
        widths = ()
    if not widths:
        raise ValidationError("expert layer widths", text, "must be widths separated by commas, e.g. 16 or 32,16")
    return widths


def recipe_changes(train: TrainConfig) -> dict[str, Any]:
    """The recipe settings of ``train`` that differ from the library's defaults (empty: the reference recipe)."""
    default = TrainConfig()
    return {name: getattr(train, name) for name in RECIPE_FIELDS if getattr(train, name) != getattr(default, name)}


def comparison_config(
    base: RunConfig,
    *,
    dataset: str,
    n_experts: int,
    expert: str,
    hidden: str,
    epochs: int,
    lr: float,
    patience: int,
    recipe: bool,
) -> RunConfig:
    """The comparison's configuration: ``base``'s data options (same dataset only), split and gate activation, the
    form's sizes and schedule, and ``base``'s training recipe when ``recipe`` is true. Seeds and the gate are set
    per run by :func:`kamoe_viz.compare.run`; comparisons train on the CPU."""
    data = DataConfig(
        name=dataset,
        options=dict(base.data.options) if base.data.name == dataset else {},
        seed=base.data.seed,
        test_fraction=base.data.test_fraction,
        val_fraction=base.data.val_fraction,
    )
    model = ModelConfig(
        kind="moe",
        gate="grkan",
        gate_activation=base.model.gate_activation,
        n_experts=n_experts,
        expert=expert,
        expert_hidden=parse_widths(hidden),
    )
    train = TrainConfig(
        epochs=epochs, batch_size=base.train.batch_size, lr=lr, early_stopping=patience, seed=0, device="cpu"
    )
    if recipe:
        train = replace(train, **recipe_changes(base.train))
    return RunConfig(data=data, model=model, train=train).validate()


__all__ = ["RECIPE_FIELDS", "comparison_config", "parse_widths", "recipe_changes"]
