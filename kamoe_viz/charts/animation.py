"""A training timeline as an animated GIF and as a zip of PNG frames, for slides (rendered offline by vl-convert;
the GIF is assembled with Pillow, which Streamlit already depends on)."""

from __future__ import annotations

import io
import zipfile
from collections.abc import Callable
from typing import Any

import numpy as np

from kamoe_viz.charts.export import chart_bytes
from kamoe_viz.errors import ValidationError

MAX_FRAMES = 60  # frames in one export (evenly spread over the snapshots, first and last included)
FRAME_SECONDS = 0.3


def frame_indices(n_snapshots: int, max_frames: int = MAX_FRAMES) -> list[int]:
    if n_snapshots < 1:
        raise ValidationError("timeline", n_snapshots, "needs at least one snapshot to export")
    if not 1 <= max_frames <= 500:
        raise ValidationError("max_frames", max_frames, "must be from 1 to 500")
    return sorted(set(np.round(np.linspace(0, n_snapshots - 1, min(n_snapshots, max_frames))).astype(int).tolist()))


def render_frames(
    timeline: Any, build: Callable[[Any], Any], max_frames: int = MAX_FRAMES, scale: float = 1.0
) -> list[tuple[int, bytes]]:
    """(epoch, PNG bytes) for up to ``max_frames`` snapshots; ``build(snapshot)`` makes each frame's chart."""
    snaps = timeline.snapshots
    return [
        (snaps[i].epoch, chart_bytes(build(snaps[i]), "png", scale=scale))
        for i in frame_indices(len(snaps), max_frames)
    ]


def gif_bytes(frames: list[tuple[int, bytes]], seconds_per_frame: float = FRAME_SECONDS) -> bytes:
    """An animated GIF (looping; the last frame held three times as long) of PNG frames of any sizes."""
    from PIL import Image

    if not frames:
        raise ValidationError("frames", 0, "must hold at least one frame")
    images = [Image.open(io.BytesIO(png)).convert("RGB") for _, png in frames]
    width = max(im.width for im in images)
    height = max(im.height for im in images)
    canvas = []
    for im in images:  # frames can differ by a legend's width: paste each onto a white canvas of the largest size
        page = Image.new("RGB", (width, height), "white")
        page.paste(im, (0, 0))
        canvas.append(page.convert("P", palette=Image.Palette.ADAPTIVE))
    ms = int(seconds_per_frame * 1000)
    out = io.BytesIO()
    canvas[0].save(
        out, format="GIF", save_all=True, append_images=canvas[1:], loop=0, duration=[ms] * (len(canvas) - 1) + [ms * 3]
    )
    return out.getvalue()


def png_zip(frames: list[tuple[int, bytes]], prefix: str = "epoch") -> bytes:
    """The frames as ``epoch_0000.png``... in a zip."""
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as zf:
        for epoch, png in frames:
            zf.writestr(f"{prefix}_{int(epoch):04d}.png", png)
    return out.getvalue()


__all__ = ["FRAME_SECONDS", "MAX_FRAMES", "frame_indices", "gif_bytes", "png_zip", "render_frames"]
