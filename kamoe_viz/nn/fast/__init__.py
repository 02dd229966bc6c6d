"""Optional speed-ups of training and inference; each gives plain autograd's numbers (to float rounding, tested).

- ``native``: the C kernel for KAN layers (``kan_kernel.c``), CPU float32.
- ``closed_form`` + ``direct_grad``: a whole training step's gradients written out by hand (CPU), no autograd graph.
- ``fused_gate``: the GRKAN gate's logits as one autograd node on the kernel.
- ``optim``: ``FastAdam``, torch's fused Adam kernel with little Python per step.
- ``cuda_graph``: a whole training step replayed as a CUDA graph (opt-in, ``KAMOE_CUDA_GRAPHS=1``).

:mod:`kamoe_viz.training.step` is the one place that chooses among them for a run. ``KAMOE_FAST=0`` in the
environment (``train --no-fast``), or :func:`plain_autograd` around the code, turns every one of them off: KAN
layers run as PyTorch ops, gradients come from autograd, the optimiser is ``torch.optim.Adam``. What each buys,
measured: README.md in this folder.
"""

from __future__ import annotations

import contextlib
import contextvars
import os
from collections.abc import Iterator

FAST_ENV = "KAMOE_FAST"  # "0" (or off/false/no): plain autograd everywhere
_forced_plain: contextvars.ContextVar[bool] = contextvars.ContextVar("kamoe_plain_autograd", default=False)


def enabled() -> bool:
    """Whether the fast paths may be used here and now (neither ``KAMOE_FAST=0`` nor :func:`plain_autograd`)."""
    if _forced_plain.get():
        return False
    return os.environ.get(FAST_ENV, "").strip().lower() not in ("0", "off", "false", "no")


@contextlib.contextmanager
def plain_autograd() -> Iterator[None]:
    """Within the block (this thread or task), every fast path is off: plain PyTorch ops and autograd."""
    token = _forced_plain.set(True)
    try:
        yield
    finally:
        _forced_plain.reset(token)


__all__ = ["FAST_ENV", "enabled", "plain_autograd"]
