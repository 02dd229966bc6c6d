"""Whole training steps replayed as CUDA graphs.

Why: our models are small, so on a GPU a training step is bound by the CPU launching a few hundred tiny kernels
(about 5 ms a step on an H100 machine, 3x slower than the reference's XLA-compiled step), not by the GPU. A CUDA
graph records the step's kernels once (forward, loss, backward, gradient norm, clipping, Adam) and launches them all
at once afterwards. Nothing in the step may sync with the host, so the step decides on the device whether to skip
the update (non-finite loss or gradient, exploding norm) and the loop reads that flag after the replay.

The graph reads its inputs from fixed buffers (the batch is copied in) and its hyper-parameters are baked in, so
only full batches replay it, and a changed learning rate needs a new capture (:meth:`GraphedStep.matches`).

Opt-in (``KAMOE_CUDA_GRAPHS=1``): the eager CUDA path has been run on an H100; this one has tests
(``tests/test_cuda.py``: graphed training equals eager training, capture failure falls back, divergence is caught)
that have not yet run on a GPU, so it stays off by default until they have.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence

import torch

StepFunction = Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, ...]]
WARMUP_STEPS = 2  # eager steps on a side stream before capture (lazy cuBLAS/cuDNN set-up), then undone
ENV_SWITCH = "KAMOE_CUDA_GRAPHS"  # "1" turns graphs on (default: eager CUDA steps)


def graphs_enabled(device: torch.device) -> bool:
    return device.type == "cuda" and os.environ.get(ENV_SWITCH, "0").strip().lower() in ("1", "true", "yes", "on")


class GraphedStep:
    """``step_fn`` (batch in, tensors out, no host sync) captured for one batch shape; call it like ``step_fn``.

    ``state`` lists every tensor the step changes in place (weights, optimiser moments and counters): the warm-up
    steps run on a copy of the batch and are undone, so capturing never trains the model on extra steps.
    """

    def __init__(
        self,
        step_fn: StepFunction,
        xb: torch.Tensor,
        yb: torch.Tensor,
        state: Sequence[torch.Tensor],
        tag: object = None,
    ) -> None:
        self.tag = tag
        self.rows = xb.shape[0]
        self._x = xb.detach().clone()
        self._y = yb.detach().clone()
        saved = [t.detach().clone() for t in state]
        rng = torch.cuda.get_rng_state(xb.device)
        side = torch.cuda.Stream(xb.device)
        side.wait_stream(torch.cuda.current_stream(xb.device))
        try:
            with torch.cuda.stream(side):
                for _ in range(WARMUP_STEPS):
                    step_fn(self._x, self._y)
        finally:
            torch.cuda.current_stream(xb.device).wait_stream(side)
            with torch.no_grad():
                for target, value in zip(state, saved):
                    target.copy_(value)
            torch.cuda.set_rng_state(rng, xb.device)
        self._graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self._graph):
            self._outputs = step_fn(self._x, self._y)

    def matches(self, xb: torch.Tensor, tag: object) -> bool:
        return xb.shape[0] == self.rows and tag == self.tag

    def __call__(self, xb: torch.Tensor, yb: torch.Tensor) -> tuple[torch.Tensor, ...]:
        self._x.copy_(xb)
        self._y.copy_(yb)
        self._graph.replay()
        return self._outputs
