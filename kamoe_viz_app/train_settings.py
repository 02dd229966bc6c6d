"""The Train page's model and training settings (widgets only); each returns the section's values as a dict."""

from __future__ import annotations

import re
from typing import Any

import streamlit as st

from kamoe_viz.config import (
    BASE_ACTIVATIONS,
    EXPERT_TYPES,
    GATE_FAMILIES,
    MAX_EXPERTS,
    SEQUENTIAL_EXPERTS,
    RunConfig,
)
from kamoe_viz.errors import ValidationError
from kamoe_viz.labels import EXPERT_LABELS, GATE_LABELS
from kamoe_viz_app.config_state import seed
from kamoe_viz_app.lock import off, why
from kamoe_viz_app.routing_settings import FIELD_LABELS as ROUTING_LABELS
from kamoe_viz_app.routing_settings import routing_settings, routing_training_settings
from kamoe_viz_app.safe import esc

GATE_HELP = (
    "**Linear**: one dense layer on h. **GRN**: gated residual network (ELU, GLU, skip, layer norm), "
    "as in the Temporal Fusion Transformer. **GRKAN**: the GRN with its two dense layers replaced by KAN "
    "layers (the paper's gate)."
)
# Settings as the widgets name them, so messages from the library ("model.top_k: got 5; ...") read in the page's words.
FIELD_LABELS = {
    "data.name": "Dataset",
    "data.seed": "Data seed",
    "data.test_fraction": "Test share",
    "data.val_fraction": "Validation share",
    "model.gate": "Gate family",
    "model.gate_activation": "Output activation",
    "model.n_experts": "Experts",
    "model.top_k": "Top-k",
    "model.expert": "Expert type",
    "model.expert_hidden": "Expert hidden sizes",
    "model.gate_hidden": "Gate hidden width",
    "model.kan_grid": "KAN grid size",
    "model.kan_order": "Spline order",
    "model.grkan_second_base": "GRKAN second KAN layer base",
    "model.return_sequences": "Gate every time step",
    "model.kan_range.low": "KAN grid from",
    "model.kan_range.high": "KAN grid to",
    "model.kan_range": "KAN grid range",
    "model.kan_base": "KAN expert base activation",
    "model.dropout": "Gate dropout",
    "model.input_scaling": "Learnable input scaling",
    "train.epochs": "Epochs",
    "train.early_stopping": "Early stopping",
    "train.lr": "Learning rate",
    "train.batch_size": "Batch size",
    "train.seed": "Seed",
    "train.device": "Device",
    "train.weight_decay": "Weight decay",
    "train.max_grad_norm": "Clip gradient norm",
    "train.lr_patience": "LR patience",
    "train.lr_factor": "LR factor",
    "train.min_lr": "Min LR",
    **ROUTING_LABELS,
}


def in_page_words(message: str) -> str:
    """``model.top_k: got 5; must be ... model.n_experts (3)`` -> ``Top-k: got 5; must be ... Experts (3)``."""
    fields = sorted(FIELD_LABELS, key=len, reverse=True)  # model.kan_range.low before model.kan_range
    parts = re.split("(" + "|".join(map(re.escape, fields)) + ")", message)
    # the rest is shown as text: a message may quote an uploaded file's column names
    return "".join(f"**{FIELD_LABELS[p]}**" if i % 2 else esc(p) for i, p in enumerate(parts))


LR_CHOICES = [1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 1e-1]
BATCH_CHOICES = [16, 32, 64, 128, 256, 512, 1024, 2048]


def parse_widths(text: str, field: str) -> tuple[int, ...]:
    """'64, 32' -> (64, 32); a clear ValidationError otherwise."""
    parts = [p.strip() for p in str(text).replace(";", ",").split(",") if p.strip()]
    try:
        widths = tuple(int(p) for p in parts)
    except ValueError:
        widths = ()
    if not widths:
        raise ValidationError(field, text, "must be layer widths separated by commas, e.g. 100 or 64,32")
    return widths


def _nearest(value: float, choices: list) -> Any:
    return value if value in choices else min(choices, key=lambda c: abs(c - value))


def model_settings(base: RunConfig, is_sequence: bool, disabled: bool) -> tuple[dict[str, Any], list[str]]:
    """Gate, experts, KAN settings. Returns the model section and error messages."""
    m = base.model
    errors: list[str] = []
    values: dict[str, Any] = {}
    values["gate"] = (
        st.segmented_control(
            "Gate family",
            list(GATE_FAMILIES),
            format_func=lambda name: GATE_LABELS.get(name, name),
            disabled=off(disabled),
            key=seed("model.gate", m.gate),
            help=why(disabled) or (GATE_HELP),
        )
        or m.gate
    )
    values["n_experts"] = st.number_input(
        "Experts",
        1,
        MAX_EXPERTS,
        step=1,
        disabled=off(disabled),
        help=why(disabled),
        key=seed("model.n_experts", m.n_experts),
    )
    values.update(routing_settings(m, int(values["n_experts"]), disabled))
    experts = list(EXPERT_TYPES)
    values["expert"] = st.selectbox(
        "Expert type",
        experts,
        format_func=lambda name: EXPERT_LABELS.get(name, name),
        disabled=off(disabled),
        key=seed("model.expert", m.expert),
        help=why(disabled)
        or (
            "MLP and KAN experts work on every dataset (windows are flattened); LSTM and GRU experts need a "
            "time-series dataset."
        ),
    )
    if values["expert"] in SEQUENTIAL_EXPERTS and not is_sequence:
        errors.append(
            f"model.expert: got {EXPERT_LABELS[values['expert']]}; these experts need a "
            "time-series dataset (windows). Choose MLP or KAN for tabular data, or pick a "
            "sequential dataset."
        )
    c1, c2 = st.columns(2)
    hidden_text = c1.text_input(
        "Expert hidden sizes",
        disabled=off(disabled),
        key=seed("model.expert_hidden", ",".join(str(h) for h in m.expert_hidden)),
        help=why(disabled) or ("Widths of each expert's layers, comma-separated, e.g. 100 or 64,32."),
    )
    try:
        values["expert_hidden"] = parse_widths(hidden_text, "model.expert_hidden")
    except ValidationError as err:
        errors.append(str(err))
        values["expert_hidden"] = m.expert_hidden
    values["gate_hidden"] = c2.number_input(
        "Gate hidden width (0 = auto)",
        0,
        1024,
        step=1,
        disabled=off(disabled),
        key=seed("model.gate_hidden", m.gate_hidden),
        help=why(disabled) or ("Width u of h = ReLU(Dense(x)); 0 uses the experts' output width."),
    )
    uses_kan = values["gate"] == "grkan" or values["expert"] == "kan"
    if uses_kan:
        c1, c2 = st.columns(2)
        values["kan_grid"] = c1.number_input(
            "KAN grid size",
            1,
            50,
            step=1,
            disabled=off(disabled),
            key=seed("model.kan_grid", m.kan_grid),
            help=why(disabled) or ("Number of spline intervals on the grid range."),
        )
        values["kan_order"] = c2.number_input(
            "Spline order",
            1,
            5,
            step=1,
            disabled=off(disabled),
            key=seed("model.kan_order", m.kan_order),
            help=why(disabled) or ("3 = cubic B-splines."),
        )
    if values["gate"] == "grkan":
        values["grkan_second_base"] = st.selectbox(
            "GRKAN second KAN layer base",
            list(BASE_ACTIVATIONS),
            disabled=off(disabled),
            key=seed("model.grkan_second_base", m.grkan_second_base),
            help=why(disabled)
            or (
                "Base activation of the GRKAN's second KAN layer: the reference code uses relu, the paper "
                "describes SiLU."
            ),
        )
    if values["expert"] in SEQUENTIAL_EXPERTS and is_sequence:
        values["return_sequences"] = st.checkbox(
            "Gate every time step (return sequences)",
            disabled=off(disabled),
            help=why(disabled),
            key=seed("model.return_sequences", m.return_sequences),
        )
    else:
        values["return_sequences"] = False
    with st.expander("More model settings"):
        if uses_kan:
            c1, c2 = st.columns(2)
            low = c1.number_input(
                "KAN grid from",
                -1000.0,
                1000.0,
                step=0.5,
                disabled=off(disabled),
                help=why(disabled),
                key=seed("model.kan_range.low", float(m.kan_range[0])),
            )
            high = c2.number_input(
                "KAN grid to",
                -1000.0,
                1000.0,
                step=0.5,
                disabled=off(disabled),
                help=why(disabled),
                key=seed("model.kan_range.high", float(m.kan_range[1])),
            )
            values["kan_range"] = (low, high)
            if values["expert"] == "kan":
                values["kan_base"] = st.selectbox(
                    "KAN expert base activation",
                    list(BASE_ACTIVATIONS),
                    disabled=off(disabled),
                    help=why(disabled),
                    key=seed("model.kan_base", m.kan_base),
                )
        values["dropout"] = st.slider(
            "Gate dropout",
            0.0,
            0.9,
            step=0.05,
            disabled=off(disabled),
            help=why(disabled),
            key=seed("model.dropout", float(m.dropout)),
        )
        values["input_scaling"] = st.checkbox(
            "Learnable input scaling (x~ = W·x)",
            disabled=off(disabled),
            help=why(disabled),
            key=seed("model.input_scaling", m.input_scaling),
        )
    return values, errors


def training_settings(base: RunConfig, devices: list[str], disabled: bool) -> dict[str, Any]:
    """Epochs, batch, learning rate, early stopping, seed, device (only devices that exist)."""
    t = base.train
    values: dict[str, Any] = {}
    c1, c2 = st.columns(2)
    values["epochs"] = c1.number_input(
        "Epochs", 1, 10_000, step=10, disabled=off(disabled), help=why(disabled), key=seed("train.epochs", t.epochs)
    )
    values["early_stopping"] = c2.number_input(
        "Early stopping (0 = off)",
        0,
        10_000,
        step=5,
        disabled=off(disabled),
        key=seed("train.early_stopping", t.early_stopping),
        help=why(disabled)
        or ("Stop after this many epochs without a better validation loss; the best weights are kept."),
    )
    lr_choices = sorted(set(LR_CHOICES) | {t.lr})
    values["lr"] = st.select_slider(
        "Learning rate",
        lr_choices,
        disabled=off(disabled, live=True),
        help="Applies from the next epoch, also while Play or Step train.",
        key=seed("train.lr", t.lr),
        format_func=lambda v: f"{v:g}",
    )
    c1, c2 = st.columns(2)
    batch_choices = sorted(set(BATCH_CHOICES) | {t.batch_size})
    values["batch_size"] = c1.selectbox(
        "Batch size",
        batch_choices,
        disabled=off(disabled),
        help=why(disabled),
        key=seed("train.batch_size", t.batch_size),
    )
    values["seed"] = c2.number_input(
        "Seed",
        0,
        2**31 - 1,
        step=1,
        disabled=off(disabled),
        key=seed("train.seed", t.seed),
        help=why(disabled) or ("Seeds the weights and the batch order; the same seed gives the same run."),
    )
    options = ["auto"] + [d for d in devices if d != "auto"]
    device = t.device if t.device in options else "auto"
    values["device"] = st.selectbox(
        "Device",
        options,
        disabled=off(disabled),
        key=seed("train.device", device),
        help=why(disabled)
        or ("Only devices present on this machine are offered. auto = the GPU if there is one, else the CPU."),
    )
    with st.expander(
        "Routing and balance",
        expanded=t.objective != "mse" or t.balance_loss > 0 or t.z_loss > 0 or t.gate_lr_scale != 1.0 or t.restarts > 1,
    ):
        values.update(routing_training_settings(t, disabled))
    with st.expander("More training settings"):
        c1, c2 = st.columns(2)
        values["weight_decay"] = c1.number_input(
            "Weight decay",
            0.0,
            1.0,
            step=1e-4,
            format="%g",
            disabled=off(disabled),
            help=why(disabled),
            key=seed("train.weight_decay", t.weight_decay),
        )
        values["max_grad_norm"] = c2.number_input(
            "Clip gradient norm (0 = off)",
            0.0,
            1e6,
            step=1.0,
            format="%g",
            disabled=off(disabled),
            help=why(disabled),
            key=seed("train.max_grad_norm", t.max_grad_norm),
        )
        c1, c2, c3 = st.columns(3)
        values["lr_patience"] = c1.number_input(
            "LR patience",
            0,
            10_000,
            step=1,
            disabled=off(disabled),
            key=seed("train.lr_patience", t.lr_patience),
            help=why(disabled) or ("Epochs without improvement before the learning rate drops."),
        )
        values["lr_factor"] = c2.number_input(
            "LR factor",
            0.01,
            1.0,
            step=0.05,
            disabled=off(disabled),
            help=why(disabled),
            key=seed("train.lr_factor", t.lr_factor),
        )
        values["min_lr"] = c3.number_input(
            "Min LR",
            0.0,
            10.0,
            step=1e-5,
            format="%g",
            disabled=off(disabled),
            help=why(disabled),
            key=seed("train.min_lr", t.min_lr),
        )
        lr = values.get("lr", t.lr)
        if values["lr_patience"] > 0 and values["min_lr"] >= lr:
            st.warning(
                f"Min LR ({values['min_lr']:g}) is not below the learning rate ({lr:g}): the learning rate "
                "will never be lowered on a plateau. Set Min LR lower, or LR patience to 0 to say so.",
                icon="⚠️",
            )
    return values
