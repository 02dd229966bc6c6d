"""The Train page's presets come from the library (kamoe_viz.presets), where their claims are tested."""

from __future__ import annotations

from kamoe_viz.presets import Preset, available_presets

__all__ = ["Preset", "available_presets"]
