"""One theme: expert k has the same colour in every chart builder (Train, Compare, Gates, Experts pages), whatever
order the experts first appear in each chart's data."""

from __future__ import annotations

import numpy as np
import pandas as pd
from interpret_helpers import tiny_run

from kamoe_viz import charts as ch
from kamoe_viz.charts import compare as cc
from kamoe_viz.charts import theme
from kamoe_viz.charts import training as ct
from kamoe_viz.interpret import experts, gates
from kamoe_viz.training.results import EpochInfo


def _expert_colors(spec: dict) -> list[dict[str, str]]:
    """Every colour encoding of an expert field in the spec, as {expert name: colour}."""
    found: list[dict[str, str]] = []

    def walk(node):
        if isinstance(node, dict):
            color = node.get("color")
            if isinstance(color, dict):
                enc = color.get("condition", color) if "field" not in color else color
                if enc.get("field") in ("expert", "winner"):
                    scale = enc.get("scale", {})
                    assert "domain" in scale and "range" in scale, f"expert colour without a fixed scale: {enc}"
                    found.append(dict(zip(scale["domain"], scale["range"])))
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk({k: v for k, v in spec.items() if k != "datasets"})
    return found


def test_every_builder_gives_each_expert_the_same_colour() -> None:
    run = tiny_run("grkan", "mlp", "softmax")
    model, data = run.model, run.dataset
    wide = gates.gate_weights_frame(model, data)
    names = [f"expert {k}" for k in range(3)]
    w = wide[names].to_numpy()
    order = np.argsort(-w[:, 2])  # expert 2's strongest rows first: first-appearance order differs per chart
    long = gates.weights_long(wide.iloc[order])
    samples = pd.DataFrame(
        {
            "variant": "grkan",
            "seed": 0,
            "row": np.repeat(np.arange(len(w)), 3),
            "expert": np.tile([2, 0, 1], len(w)),
            "weight": w[order][:, [2, 0, 1]].reshape(-1),
        }
    )
    records = [
        EpochInfo(
            epoch=e,
            train_loss=1.0,
            val_loss=1.0,
            lr=0.01,
            seconds_elapsed=e,
            eta_seconds=0,
            best_epoch=e,
            gate_weights=w[::-1],
        )
        for e in (1, 2)
    ]
    table = experts.routing_table(model, data)
    charts = {
        "train: gate distribution": ct.gate_distribution_chart(ct.gate_weight_frame(w[order][:, [0, 1, 2]])),
        "train: load over training": ct.load_chart(ct.load_history_frame(records, "softmax")),
        "compare: gate distribution": cc.gate_distribution_chart(samples),
        "gates: histogram": ch.weight_histogram_chart(long),
        "gates: violin": ch.weight_violin_chart(long),
        "gates: winner map": ch.region_winner_chart(gates.region_map(model, data, resolution=12)),
        "experts: expert vs target": ch.expert_vs_target_chart(experts.expert_vs_target(table)),
    }
    expected = {name: theme.EXPERT_COLORS[k] for k, name in enumerate(names)}
    for what, chart in charts.items():
        found = _expert_colors(chart.to_dict())
        assert found, f"{what}: no expert colour encoding"
        for mapping in found:
            assert {k: mapping[k] for k in names if k in mapping} == expected, what
    assert len(set(expected.values())) == 3
