"""Settings locked while the Playground trains a model step by step (see kamoe_viz_app/playground.py).

The settings builders take ``disabled`` as False, True (a training runs: everything is off) or a reason text
(a model exists: settings that fix its shape or data are off, with the reason as their tooltip; live settings such
as the learning rate stay on, see kamoe_viz.training.session.LIVE_SETTINGS).
"""

from __future__ import annotations


def off(disabled: bool | str, live: bool = False) -> bool:
    """Whether a widget is disabled: always while a training runs; while locked unless it is a live setting."""
    return disabled is True or (isinstance(disabled, str) and bool(disabled) and not live)


def why(disabled: bool | str, live: bool = False) -> str | None:
    """The lock reason to show as the widget's tooltip (None when it is not locked)."""
    return disabled if isinstance(disabled, str) and disabled and not live else None
