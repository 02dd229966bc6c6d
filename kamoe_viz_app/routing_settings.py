"""The Train page's routing settings (widgets only): the router and the options it reads, shared experts, and the
training options that act on routing (balance and z losses, objective, gate learning-rate scale).

Each router's help text is its definition from :data:`kamoe_viz.routing_specs.ROUTERS`; an option is shown only
when the chosen router reads it. Bounds come from kamoe_viz.config.
"""

from __future__ import annotations

from typing import Any

import streamlit as st

from kamoe_viz.charts.training import LOAD_DEFINITIONS
from kamoe_viz.config import (
    BALANCE_LOSS_RANGE,
    BIAS_UPDATE_RATE_RANGE,
    CAPACITY_FACTOR_RANGE,
    GATE_ACTIVATIONS,
    GATE_LR_SCALE_RANGE,
    MAX_EPOCHS,
    MAX_EXPERTS,
    MAX_RESTARTS,
    MAX_SHARED_EXPERTS,
    OBJECTIVES,
    Z_LOSS_RANGE,
    ModelConfig,
    TrainConfig,
)
from kamoe_viz.routing_specs import (
    OBJECTIVE_DEFINITIONS,
    RESTARTS_DEFINITION,
    ROUTERS,
    SHARED_EXPERTS_DEFINITION,
)
from kamoe_viz_app.config_state import seed
from kamoe_viz_app.lock import off, why

ROUTER_HELP = "\n\n".join(f"**{s.title}** ({s.paper}): {s.definition}" for s in ROUTERS.values())
BATCH_DEPENDENT_NOTE = (
    "{title} routing depends on the batch: which rows an expert takes is decided among the rows "
    "evaluated together, so a row's weights (and prediction) can change with the other rows of "
    "its batch, also after training."
)
FIELD_LABELS = {
    "model.routing": "Router",
    "model.capacity_factor": "Capacity factor",
    "model.shared_experts": "Shared experts",
    "model.bias_update_rate": "Bias update rate",
    "train.balance_loss": "Balance loss weight",
    "train.z_loss": "Z-loss weight",
    "train.objective": "Training objective",
    "train.gate_lr_scale": "Gate LR scale",
    "train.restarts": "Restarts",
    "train.restart_epochs": "Epochs per restart",
}


def routing_settings(m: ModelConfig, n_experts: int, disabled: bool) -> dict[str, Any]:
    """Router select and the options it reads; options it does not read keep their defaults (top_k 0)."""
    values: dict[str, Any] = {}
    routing = st.selectbox(
        "Router",
        list(ROUTERS),
        format_func=lambda name: ROUTERS[name].title,
        disabled=off(disabled),
        key=seed("model.routing", m.routing),
        help=why(disabled) or (ROUTER_HELP),
    )
    values["routing"] = routing
    spec = ROUTERS[routing]
    st.caption(spec.definition)
    if spec.batch_dependent:
        st.info(BATCH_DEPENDENT_NOTE.format(title=spec.title), icon="ℹ️")
    defaults = ModelConfig()
    if "gate_activation" in spec.options:
        values["gate_activation"] = (
            st.segmented_control(
                "Gate output activation",
                list(GATE_ACTIVATIONS),
                disabled=off(disabled),
                key=seed("model.gate_activation", m.gate_activation),
                help=why(disabled)
                or (
                    "softmax: weights sum to 1 (experts compete). sigmoid: each weight in (0, 1) on its own "
                    "(the reference)."
                ),
            )
            or m.gate_activation
        )
        st.caption(LOAD_DEFINITIONS[values["gate_activation"]])
    else:
        values["gate_activation"] = m.gate_activation
    c1, c2 = st.columns(2)
    if "top_k" in spec.options:
        top_k = max(1, min(m.top_k, n_experts)) if m.top_k else 1
        values["top_k"] = c1.number_input(
            "Top-k",
            1,
            MAX_EXPERTS,
            step=1,
            disabled=off(disabled),
            key=seed("model.top_k", top_k),
            help=why(disabled) or ("Experts each input is sent to."),
        )
    else:
        values["top_k"] = 0
    if "capacity_factor" in spec.options:
        values["capacity_factor"] = c2.number_input(
            "Capacity factor",
            *CAPACITY_FACTOR_RANGE,
            step=0.25,
            disabled=off(disabled),
            key=seed("model.capacity_factor", float(m.capacity_factor)),
            help=why(disabled) or ("An expert takes at most ceil(capacity factor × rows / experts) rows of a batch."),
        )
    else:
        values["capacity_factor"] = defaults.capacity_factor
    if "bias_update_rate" in spec.options:
        values["bias_update_rate"] = c2.number_input(
            "Bias update rate",
            *BIAS_UPDATE_RATE_RANGE,
            step=0.001,
            format="%g",
            disabled=off(disabled),
            key=seed("model.bias_update_rate", float(m.bias_update_rate)),
            help=why(disabled) or ("u in b_i += u · sign(mean load − load_i), after every optimiser step."),
        )
    else:
        values["bias_update_rate"] = defaults.bias_update_rate
    values["shared_experts"] = st.number_input(
        "Shared experts (always on)",
        0,
        MAX_SHARED_EXPERTS,
        step=1,
        disabled=off(disabled),
        key=seed("model.shared_experts", m.shared_experts),
        help=why(disabled) or (SHARED_EXPERTS_DEFINITION),
    )
    return values


def routing_training_settings(t: TrainConfig, disabled: bool) -> dict[str, Any]:
    """Balance and z-loss weights, the objective and the gate's learning-rate scale."""
    values: dict[str, Any] = {}
    values["objective"] = (
        st.segmented_control(
            "Training objective",
            list(OBJECTIVES),
            disabled=off(disabled),
            key=seed("train.objective", t.objective),
            help=why(disabled) or ("\n\n".join(f"**{k}**: {v}" for k, v in OBJECTIVE_DEFINITIONS.items())),
        )
        or t.objective
    )
    c1, c2, c3 = st.columns(3)
    values["balance_loss"] = c1.number_input(
        "Balance loss weight",
        *BALANCE_LOSS_RANGE,
        step=0.01,
        format="%g",
        disabled=off(disabled, live=True),
        key=seed("train.balance_loss", float(t.balance_loss)),
        help=(
            "Applies from the next epoch, also while Play or Step train. α of the Switch auxiliary loss "
            "α·E·Σ f_i·P_i (f_i: share of rows whose top expert is i; P_i: mean softmax probability of i); "
            "0 = off. Logged per epoch either way."
        ),
    )
    values["z_loss"] = c2.number_input(
        "Z-loss weight",
        *Z_LOSS_RANGE,
        step=0.001,
        format="%g",
        disabled=off(disabled),
        key=seed("train.z_loss", float(t.z_loss)),
        help=why(disabled)
        or ("Weight of the router z-loss mean(logsumexp(logits)²) (ST-MoE), which keeps logits small; 0 = off."),
    )
    values["gate_lr_scale"] = c3.number_input(
        "Gate LR scale",
        *GATE_LR_SCALE_RANGE,
        step=0.5,
        format="%g",
        disabled=off(disabled),
        key=seed("train.gate_lr_scale", float(t.gate_lr_scale)),
        help=why(disabled) or ("The gate, its input layer and the router learn at learning rate × this."),
    )
    c1, c2 = st.columns(2)
    values["restarts"] = c1.number_input(
        FIELD_LABELS["train.restarts"],
        1,
        MAX_RESTARTS,
        step=1,
        disabled=off(disabled),
        key=seed("train.restarts", int(t.restarts)),
        help=why(disabled) or RESTARTS_DEFINITION,
    )
    values["restart_epochs"] = c2.number_input(
        FIELD_LABELS["train.restart_epochs"],
        1,
        MAX_EPOCHS,
        step=5,
        disabled=off(disabled),
        key=seed("train.restart_epochs", int(t.restart_epochs)),
        help=why(disabled) or "Epochs each restart trains before the restarts are compared on the validation split.",
    )
    return values
