"""Save a chart as PNG or SVG bytes (vl-convert, offline), for download buttons and reports."""
from __future__ import annotations

import altair as alt
import vl_convert as vlc

FORMATS = {"png": "image/png", "svg": "image/svg+xml"}


def chart_bytes(chart: alt.TopLevelMixin, fmt: str = "png", scale: float = 2.0) -> bytes:
    """The chart rendered to PNG (``scale`` × its size) or SVG. Raises ValueError for other formats."""
    if fmt not in FORMATS:
        raise ValueError(f"chart format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    spec = chart.to_json()
    if fmt == "png":
        return vlc.vegalite_to_png(spec, scale=scale)
    return vlc.vegalite_to_svg(spec).encode("utf-8")
