"""The library's own exception types.

Every problem a user can cause (bad CSV, impossible setting, corrupt run file, diverging training) is raised as a
subclass of :class:`KamoeError`, so the app and the CLI can show its message instead of a traceback.
"""

from __future__ import annotations

from typing import Any


class KamoeError(Exception):
    """Base class of every error the library raises on purpose."""


class ValidationError(KamoeError, ValueError):
    """A value at a boundary (setting, CSV column, URL parameter, file field) is not allowed.

    The message names the field, the bad value and what is allowed, e.g.
    ``model.n_experts: got 0; must be an integer from 1 to 16.``
    """

    def __init__(self, field: str, value: Any, allowed: str, hint: str | None = None) -> None:
        self.field = field
        self.value = value
        self.allowed = allowed
        self.hint = hint
        shown = repr(value)
        if len(shown) > 80:
            shown = shown[:77] + "..."
        message = f"{field}: got {shown}; {allowed}."
        if hint:
            message += f" {hint}"
        super().__init__(message)


class DataError(ValidationError):
    """A dataset or CSV cannot be used as given (missing column, NaN, constant column, too few rows...)."""


class GridUpdateError(KamoeError):
    """A KAN grid update could not refit the spline coefficients."""


class TrainingDivergedError(KamoeError):
    """The loss became NaN/inf or gradients exploded; the best weights so far were kept.

    Raised by :class:`kamoe_viz.training.Trainer` built with ``raise_on_divergence=True`` (the CLI); the message
    names the epoch, the weights kept and what to lower. ``epoch``: the epoch that diverged (1-based);
    ``best_epoch``: the epoch whose weights were kept (None: the initial weights)."""

    def __init__(self, message: str, epoch: int | None = None, best_epoch: int | None = None) -> None:
        super().__init__(message)
        self.epoch, self.best_epoch = epoch, best_epoch


class RunFileError(KamoeError):
    """A saved run is truncated, edited, foreign or of an unsupported format version."""
