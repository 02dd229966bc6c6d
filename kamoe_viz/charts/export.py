"""A chart as a Vega-Lite dict (validated once, data inline), and as PNG or SVG bytes (vl-convert, offline)."""

from __future__ import annotations

from typing import Any

import altair as alt
import pandas as pd
import vl_convert as vlc

FORMATS = {"png": "image/png", "svg": "image/svg+xml"}


def chart_spec(chart: alt.TopLevelMixin, validate: bool = True) -> dict[str, Any]:
    """The chart's Vega-Lite spec with its data inline, validated against the schema.

    Altair's 5000-row guard is lifted here because the builders already cap their data (region maps have up to
    400 cells per axis per expert). Pages keep this dict so a rerun does not rebuild or revalidate the chart.
    ``validate=False`` skips the schema check (a third of the time) for views redrawn many times a second from
    builders whose output the tests validate.
    """
    with alt.data_transformers.disable_max_rows():
        spec = chart.to_dict(validate=validate)
    # Natural size (plot area as designed, axes and legends around it), as vl-convert draws it; Streamlit would
    # otherwise squeeze single views into their width including long axis labels.
    spec.setdefault("autosize", {"type": "pad", "contains": "padding"})
    return spec


_SUBCHARTS = ("layer", "hconcat", "vconcat", "concat", "spec")


def _named_data(chart: Any, frames: dict[str, pd.DataFrame], names: dict[int, str]) -> Any:
    """A shallow copy of ``chart`` whose DataFrames (its own and its sub-charts') are named datasets."""
    out = chart.copy(deep=False)
    data = getattr(out, "data", alt.Undefined)
    if isinstance(data, pd.DataFrame):
        name = names.setdefault(id(data), f"frame_{len(names)}")
        frames[name] = data
        out.data = alt.NamedData(name=name)
    for attr in _SUBCHARTS:
        sub = getattr(out, attr, alt.Undefined)
        if isinstance(sub, list):
            setattr(out, attr, [_named_data(c, frames, names) if isinstance(c, alt.SchemaBase) else c for c in sub])
        elif isinstance(sub, alt.TopLevelMixin | alt.Chart):
            setattr(out, attr, _named_data(sub, frames, names))
    return out


def frames_spec(chart: alt.TopLevelMixin) -> dict[str, Any]:
    """The chart's spec for display, its data kept as DataFrames under ``datasets`` (Streamlit sends them as Arrow).

    :func:`chart_spec` turns every frame into JSON records (and hashes them to name the dataset): most of the time
    of a 3 600-cell region map, and wasted on a page that turns the records back into frames. Not validated: for
    views redrawn many times a second from builders whose output the tests validate."""
    frames: dict[str, pd.DataFrame] = {}
    spec = _named_data(chart, frames, {}).to_dict(validate=False)
    spec.setdefault("autosize", {"type": "pad", "contains": "padding"})
    spec["datasets"] = {**spec.get("datasets", {}), **frames}
    return spec


def chart_bytes(chart: alt.TopLevelMixin | dict[str, Any], fmt: str = "png", scale: float = 2.0) -> bytes:
    """The chart (an Altair chart or a spec from :func:`chart_spec`) rendered to PNG (``scale`` × its size) or
    SVG. Raises ValueError for other formats."""
    if fmt not in FORMATS:
        raise ValueError(f"chart format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    spec = chart if isinstance(chart, dict) else chart_spec(chart)
    if fmt == "png":
        return vlc.vegalite_to_png(spec, scale=scale)
    return vlc.vegalite_to_svg(spec).encode("utf-8")
