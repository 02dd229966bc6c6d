"""Display labels, defined once: how pages, charts, reports and the CLI name gates, experts, routers, metrics,
compared variants and datasets. Torch- and streamlit-free.

Routers carry their titles in their specs (:data:`kamoe_viz.routing_specs.ROUTERS`) and datasets in the dataset
registry (``DatasetInfo.title``); :func:`router_label` reads the former.
"""

from __future__ import annotations

import re

from kamoe_viz.routing_specs import ROUTERS

GATE_LABELS = {"linear": "Linear", "grn": "GRN", "grkan": "GRKAN"}
EXPERT_LABELS = {"mlp": "MLP", "kan": "KAN", "lstm": "LSTM", "gru": "GRU"}
METRIC_LABELS = {"r2": "R²", "rmse": "RMSE", "mae": "MAE", "accuracy": "accuracy", "log_loss": "log loss"}
ROUTING_METRIC_LABELS = {
    "nmi": "NMI vs regimes",
    "ari": "ARI vs regimes",
    "mutual_information": "mutual information (nats)",
    "load_cv": "load CV",
    "max_violation": "MaxVio",
    "max_violation_batch": "MaxVio per batch",
    "gini": "Gini of load",
    "min_load": "min load",
    "max_load": "max load",
    "routing_entropy": "routing entropy",
    "dropped_fraction": "dropped rows",
}
STANDARD_LABEL = "standard (1 expert)"  # the single-expert baseline of a comparison
# A comparison's variants: the baseline and one per gate ("GRKAN gate"); "gate/router" pairs add the router.
VARIANT_LABELS = {"standard": STANDARD_LABEL, **{gate: f"{label} gate" for gate, label in GATE_LABELS.items()}}
# The paper's names for the same variants, used in the reproduction report's tables.
PAPER_VARIANT_LABELS = {
    "standard": "Standard",
    "linear": "MoE (linear gate)",
    "grn": "MoE (GRN gate)",
    "grkan": "KAMoE (GRKAN gate)",
}


def gate_kan_units(layer: str, n_in: int, n_out: int) -> tuple[list[str], list[str]]:
    """Names of a GRKAN gate KAN layer's inputs and outputs: its first layer reads the gate's hidden units h
    (ReLU(Dense(x)), not the input features) and writes kan1·j; the second reads kan1·i and writes kan2·j."""
    inputs = [f"h{i}" for i in range(n_in)] if layer.endswith("kan1") else [f"kan1·{i}" for i in range(n_in)]
    return inputs, [f"{layer.split('.')[-1]}·{j}" for j in range(n_out)]


def gate_kan_edge(layer: str, i: int, j: int) -> str:
    """One GRKAN gate edge as the Splines page names it, e.g. ``h12 → kan1·1``."""
    inputs, outputs = gate_kan_units(layer, i + 1, j + 1)
    return f"{inputs[i]} → {outputs[j]}"


def gate_label(gate: str) -> str:
    return GATE_LABELS.get(gate, gate)


def expert_label(expert: str) -> str:
    return EXPERT_LABELS.get(expert, expert)


def metric_label(metric: str) -> str:
    """How a score is written for people: 'r2' -> 'R²', 'rmse' -> 'RMSE'."""
    return METRIC_LABELS.get(str(metric), str(metric))


def router_label(routing: str) -> str:
    spec = ROUTERS.get(routing)
    return spec.title if spec is not None else routing


def variant_label(variant: str) -> str:
    """'grkan' -> 'GRKAN gate', 'grkan/switch' -> 'GRKAN gate · Switch (top-1, capacity)'."""
    gate, _, routing = str(variant).partition("/")
    label = VARIANT_LABELS.get(gate, gate)
    return f"{label} · {ROUTERS[routing].title}" if routing in ROUTERS else label if not routing else str(variant)


def in_variant_labels(text: str) -> str:
    """Variant names in a sentence (a verdict) as the charts name them: 'grkan beats grn' -> 'GRKAN gate beats ...'."""
    return re.sub(r"\b(" + "|".join(VARIANT_LABELS) + r")(/[a-z_]+)?\b", lambda m: variant_label(m.group(0)), text)
