"""Specs for charts redrawn several times a second (the Train page's live views while a model trains).

Building an Altair chart costs 5-30 ms (every encoding is validated against the schema) even when only its data
changed. So each live chart is built once per *shape* (what fixes the spec apart from its data: the number of
experts, axis titles, which rules are drawn...) and later redraws put the new frames into a copy of that spec.
Each :class:`LiveChart` names its builder, the function giving the builder's frames (in the order
:func:`kamoe_viz.charts.export.frames_spec` names them) and its shape; tests/test_timeline_charts.py checks that a
kept spec refilled with new data equals the spec built from that data.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from kamoe_viz.charts import timeline as tc
from kamoe_viz.charts import training as ct
from kamoe_viz.charts.export import frames_spec

MAX_TEMPLATES = 32  # kept specs per cache (a shape changes rarely: new data, another expert count)


@dataclass(frozen=True)
class LiveChart:
    build: Callable[..., Any]  # inputs -> Altair chart
    data: Callable[..., list[pd.DataFrame]]  # same inputs -> the chart's frames, in frames_spec order
    shape: Callable[..., Hashable]  # same inputs -> what fixes the spec apart from the frames


def _plane(frame: pd.DataFrame, points: pd.DataFrame | None, **options: Any) -> Hashable:
    """A map's shape: its grid (axes, names), columns, the experts or classes drawn, the points' kind, options."""
    values = ("expert", "predicted")
    labels = tuple(tuple(sorted(frame[c].unique())) for c in values if c in frame)
    kind = None if points is None or not len(points) else str(points["target"].dtype)
    bounds = tuple(float(v) for c in ("x", "y") for v in (frame[c].min(), frame[c].max())) if len(frame) else ()
    return (
        tuple(frame.columns),
        tuple(sorted(frame.attrs.items())),
        labels,
        kind,
        bounds,
        tuple(sorted(options.items())),
    )


def _story(metrics: pd.DataFrame, settle: int | None = None, current: int | None = None, **options: Any) -> Hashable:
    keep = tuple(m for m in tc.STORY_METRICS if m in metrics and metrics[m].notna().any())
    return keep, settle is not None, current is not None, tuple(sorted(options.items()))


LIVE_CHARTS: dict[str, LiveChart] = {
    "region": LiveChart(tc.region_map_chart, tc.region_map_data, _plane),
    "prediction": LiveChart(tc.prediction_map_chart, tc.prediction_map_data, _plane),
    "load": LiveChart(
        tc.load_bars_chart, tc.load_bars_data, lambda load, **options: (len(load), tuple(sorted(options.items())))
    ),
    "histogram": LiveChart(tc.histogram_chart, tc.histogram_data, lambda weights: np.shape(weights)[-1]),
    "story": LiveChart(tc.story_metrics_chart, tc.story_metrics_data, _story),
    "loss": LiveChart(ct.loss_chart, ct.loss_data, ct.loss_shape),
}


class LiveSpecs:
    """Kept specs of the live charts (one cache per browser session): :meth:`spec` builds a chart the first time
    its shape is seen, then only refills the kept spec's datasets."""

    def __init__(self, max_templates: int = MAX_TEMPLATES) -> None:
        self.max_templates = int(max_templates)
        self._templates: OrderedDict[Hashable, tuple[dict[str, Any], list[str]]] = OrderedDict()
        self.builds = 0  # how many charts were built with Altair (the rest were refilled)

    def spec(self, name: str, *args: Any, **kwargs: Any) -> dict[str, Any]:
        chart = LIVE_CHARTS[name]
        key = (name, chart.shape(*args, **kwargs))
        kept = self._templates.get(key)
        if kept is None:
            spec = frames_spec(chart.build(*args, **kwargs))
            self.builds += 1
            frames = [n for n, v in spec["datasets"].items() if isinstance(v, pd.DataFrame)]
            self._templates[key] = (spec, frames)
            while len(self._templates) > self.max_templates:
                self._templates.popitem(last=False)
            return {**spec, "datasets": dict(spec["datasets"])}  # the caller may replace datasets, not the kept ones
        self._templates.move_to_end(key)
        template, names = kept
        frames = chart.data(*args, **kwargs)
        if len(frames) != len(names):  # a shape function missed something: build, do not draw a wrong chart
            del self._templates[key]
            return self.spec(name, *args, **kwargs)
        return {**template, "datasets": {**template["datasets"], **dict(zip(names, frames))}}


__all__ = ["LIVE_CHARTS", "MAX_TEMPLATES", "LiveChart", "LiveSpecs"]
