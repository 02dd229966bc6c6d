"""The parameters of S seeds of one model in one flat tensor, with Adam over them (per-seed steps and rates).

Used by :mod:`kamoe_viz.training.batched`: one Adam over stacked weights with per-seed step counts and learning
rates is exactly S independent Adams, and one flat buffer makes each step a few ops over all parameters.
"""

from __future__ import annotations

import torch

BETAS = (0.9, 0.999)  # FastAdam's defaults (torch.optim.Adam's)
EPS = 1e-8
FUSED_ADAM = hasattr(torch, "_fused_adam_")


class ParameterStack:
    """Every parameter of S seeds in one flat tensor: parameter n is ``flat[offset:offset + S*k].view(S, *shape)``.

    One flat tensor makes the optimiser, the gradient norms and the finiteness checks a few ops over all
    parameters (a small model's step is bound by per-op overhead); ``seed_of`` maps each element to its seed's
    row, so per-seed scalars (learning rate, clipping factor, step size) broadcast with one gather. ``grad`` (the
    closed-form path writes into its views ``g``) and ``best`` (each seed's best weights) share the layout."""

    def __init__(self, tensors: dict[str, torch.Tensor]) -> None:
        self.names = list(tensors)
        self.shapes = {n: t.shape[1:] for n, t in tensors.items()}
        self.S = next(iter(tensors.values())).shape[0]
        self.flat = torch.cat([t.reshape(-1) for t in tensors.values()])
        self.exp_avg = torch.zeros_like(self.flat)
        self.exp_avg_sq = torch.zeros_like(self.flat)
        self.best = self.flat.clone()
        self.steps = torch.zeros(self.S, device=self.flat.device)
        self._index()

    def _index(self) -> None:
        rows = [
            torch.arange(self.S, device=self.flat.device).repeat_interleave(self.shapes[n].numel()) for n in self.names
        ]
        self.seed_of = torch.cat(rows)
        self.grad = torch.zeros_like(self.flat)
        self.p, self.g = self.views(self.flat), self.views(self.grad)

    def views(self, flat: torch.Tensor) -> dict[str, torch.Tensor]:
        out, offset = {}, 0
        for n in self.names:
            k = self.S * self.shapes[n].numel()
            out[n] = flat[offset : offset + k].view(self.S, *self.shapes[n])
            offset += k
        return out

    def seed(self, j: int, buffer: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """Seed j's weights (``buffer``: another buffer of this layout, e.g. ``best``), as its own tensors."""
        return {n: v[j].clone() for n, v in self.views(self.flat if buffer is None else buffer).items()}

    def mark_best(self, improved: torch.Tensor) -> None:
        """The current weights become the best of the seeds where ``improved`` (bool, (S,))."""
        self.best = torch.where(improved[self.seed_of], self.flat, self.best)

    def keep(self, positions: list[int]) -> None:
        """Only the seeds at these stack positions stay."""
        idx = torch.tensor(positions, dtype=torch.long, device=self.flat.device)
        parts = []
        for buf in (self.flat, self.exp_avg, self.exp_avg_sq, self.best):
            parts.append(torch.cat([v.index_select(0, idx).reshape(-1) for v in self.views(buf).values()]))
        self.flat, self.exp_avg, self.exp_avg_sq, self.best = parts
        self.steps = self.steps.index_select(0, idx)
        self.S = len(positions)
        self._index()

    def sq_norms(self, grad: torch.Tensor) -> torch.Tensor:
        return torch.zeros(self.S, dtype=grad.dtype, device=grad.device).index_add_(0, self.seed_of, grad * grad)

    @torch.no_grad()
    def fused_adam(self, grad: torch.Tensor, lr: float, scale: torch.Tensor | None, weight_decay: float) -> None:
        """The common case, in one call of torch's fused Adam kernel (the single-run FastAdam's, so the same
        arithmetic): every seed in the stack takes this step with the same learning rate (their step counts are
        then equal too, since a seed that skipped a step leaves the stack at the end of that epoch)."""
        if scale is not None:
            grad = grad * scale[self.seed_of]
        self.steps += 1
        torch._fused_adam_(
            [self.flat],
            [grad],
            [self.exp_avg],
            [self.exp_avg_sq],
            [],
            [self.steps[:1]],
            lr=lr,
            beta1=BETAS[0],
            beta2=BETAS[1],
            weight_decay=weight_decay,
            eps=EPS,
            amsgrad=False,
            maximize=False,
        )

    @torch.no_grad()
    def adam(
        self, grad: torch.Tensor, lrs: torch.Tensor, keep: torch.Tensor, scale: torch.Tensor | None, weight_decay: float
    ) -> None:
        """Adam with L2 weight decay (torch.optim.Adam's arithmetic), per seed: its own step count, learning rate
        and clipping factor; a seed with ``keep == 0`` stays exactly as it was."""
        beta1, beta2 = BETAS
        self.steps += keep
        t = self.steps.clamp(min=1.0)
        per_seed = torch.stack(
            [
                keep,
                lrs / (1 - beta1**t) * keep,
                (1 - beta2**t).sqrt(),
                scale if scale is not None else torch.ones_like(keep),
            ]
        )
        k, step_size, bias2_sqrt, factor = per_seed[:, self.seed_of]
        g = torch.where(k > 0, grad * factor, torch.zeros_like(grad))  # non-finite gradients never enter moments
        if weight_decay:
            g = g + weight_decay * self.flat
        self.exp_avg.addcmul_(self.exp_avg - g, k, value=-(1 - beta1))  # m += (1-b1)(g - m) where kept
        self.exp_avg_sq.addcmul_(self.exp_avg_sq - g * g, k, value=-(1 - beta2))
        denom = (self.exp_avg_sq.sqrt() / bias2_sqrt).add_(EPS)
        self.flat.addcdiv_(self.exp_avg * step_size, denom, value=-1.0)
