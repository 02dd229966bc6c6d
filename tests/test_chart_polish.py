"""Loss curves label their best-epoch line; 2-D region maps use equal axes (the plane is not stretched)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from kamoe_viz.charts.gates import region_weight_charts, region_winner_chart
from kamoe_viz.charts.training import loss_chart


def _find(spec, key):
    if isinstance(spec, dict):
        for k, v in spec.items():
            if k == key:
                yield v
            yield from _find(v, key)
    elif isinstance(spec, list):
        for v in spec:
            yield from _find(v, key)


def test_the_best_epoch_line_has_a_visible_label() -> None:
    history = pd.DataFrame(
        {"epoch": [1, 2, 3] * 2, "split": ["train"] * 3 + ["validation"] * 3, "loss": [1.0, 0.5, 0.4, 1.1, 0.6, 0.7]}
    )
    spec = loss_chart(history, best_epoch=2).to_dict()
    marks = [m if isinstance(m, str) else m.get("type") for m in _find(spec, "mark")]
    assert "text" in marks


def test_a_late_best_epoch_label_sits_left_of_its_line_inside_the_chart() -> None:
    """Right of a line near the right edge the label was cut off ('best epoch 9' of 'best epoch 96')."""
    epochs = list(range(1, 101))
    history = pd.DataFrame({"epoch": epochs, "split": "train", "loss": [1.0 / e for e in epochs]})

    def text_mark(best: int) -> dict:
        spec = loss_chart(history, best_epoch=best).to_dict()
        return next(m for m in _find(spec, "mark") if isinstance(m, dict) and m.get("type") == "text")

    assert (text_mark(96)["align"], text_mark(96)["dx"]) == ("right", -4)
    assert (text_mark(10)["align"], text_mark(10)["dx"]) == ("left", 4)


def test_region_maps_have_equal_axis_spans() -> None:
    xs, ys = np.linspace(-3, 3, 7), np.linspace(-1, 1, 5)  # a wide plane, as the spiral's or moons' can be
    rows = [
        {"x": x, "y": y, "expert": f"expert {e}", "weight": 0.5, "winner": "expert 0", "winning_weight": 0.5}
        for x in xs
        for y in ys
        for e in (0, 1)
    ]
    grid = pd.DataFrame(rows)
    for chart in (region_winner_chart(grid), region_weight_charts(grid)):
        domains = [
            d
            for d in _find(chart.to_dict(), "domain")
            if isinstance(d, list) and len(d) == 2 and all(isinstance(v, float) for v in d)
        ]
        spans = {round(hi - lo, 9) for lo, hi in domains}
        assert len(domains) >= 2 and len(spans) == 1, domains


def test_the_regime_series_axis_title_sits_below_the_band() -> None:
    from kamoe_viz.charts.gates import gates_over_time_chart

    frame = pd.DataFrame(
        {
            "t": [0, 1, 2] * 2,
            "expert": ["expert 0"] * 3 + ["expert 1"] * 3,
            "weight": [0.2, 0.5, 0.9, 0.8, 0.5, 0.1],
            "regime": ["a", "b", "b"] * 2,
        }
    )
    top, band = gates_over_time_chart(frame).to_dict()["vconcat"]
    assert top["encoding"]["x"].get("title") is None
    assert band["encoding"]["x"]["title"] == "window (time order)"
