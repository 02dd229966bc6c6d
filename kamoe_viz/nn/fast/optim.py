"""FastAdam: torch.optim.Adam's update (the same fused kernel, bit for bit) with almost no Python per step.

Why: our models are small, so a training step is dominated by per-call overhead. ``torch.optim.Adam.step`` spends
more time in Python bookkeeping (parameter groups, lazy state, one step counter per parameter) than in its fused
kernel, and its first use imports ``torch._dynamo`` (about 1.5 s on a 2-core machine), which the user would wait
for on the first click. FastAdam keeps one shared step counter and prebuilt tensor lists, and calls the fused
kernel directly; where that kernel is unavailable it falls back to a plain ``torch._foreach_*`` implementation.

It is not a ``torch.optim.Optimizer`` subclass (that base class is what imports dynamo), but offers what a
training loop uses: ``param_groups`` (with a mutable ``"lr"``), ``zero_grad``, ``step``, ``state_dict`` and
``load_state_dict``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch


class FastAdam:
    """Adam (Kingma & Ba) with L2 weight decay added to the gradient, as ``torch.optim.Adam``."""

    def __init__(
        self,
        params: Iterable[torch.nn.Parameter],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        fused: bool | None = None,
        skip_nonfinite: bool = False,
    ) -> None:
        """``skip_nonfinite``: check every step's gradients for NaN/inf on the device (one op, no host sync) and
        skip that update; ``skipped_steps`` (a 0-d tensor) counts the skipped steps, for a loop to read once an
        epoch instead of syncing on every batch."""
        self.params: list[torch.Tensor] = [p for p in params if p.requires_grad]
        if not self.params:
            raise ValueError("FastAdam got no trainable parameters")
        if not lr > 0.0 or not eps >= 0.0 or not 0.0 <= betas[0] < 1.0 or not 0.0 <= betas[1] < 1.0:
            raise ValueError(f"invalid Adam settings lr={lr}, betas={betas}, eps={eps}")
        self.defaults = {"lr": lr, "betas": tuple(betas), "eps": eps, "weight_decay": weight_decay}
        self.param_groups: list[dict[str, Any]] = [{"params": self.params, **self.defaults}]
        self.exp_avg = [torch.zeros_like(p, memory_format=torch.preserve_format) for p in self.params]
        self.exp_avg_sq = [torch.zeros_like(p, memory_format=torch.preserve_format) for p in self.params]
        device = self.params[0].device
        self.step_count = torch.zeros((), dtype=torch.float32, device=device)
        self._steps = [self.step_count] * len(self.params)
        same_device = all(p.device == device for p in self.params)
        self.fused = same_device and (fused if fused is not None else hasattr(torch, "_fused_adam_"))
        self.skip_nonfinite = skip_nonfinite
        self.skipped_steps = torch.zeros((), dtype=torch.float32, device=device)
        self._found_inf = torch.zeros((), dtype=torch.float32, device=device)
        self._one = torch.ones((), dtype=torch.float32, device=device)

    # ----- the loop's interface -------------------------------------------------------------------------------------
    def zero_grad(self, set_to_none: bool = True) -> None:
        for p in self.params:
            if set_to_none:
                p.grad = None
            elif p.grad is not None:
                p.grad.zero_()

    def state_tensors(self) -> list[torch.Tensor]:
        """Every tensor a step changes in place (moments and counters), e.g. to undo warm-up steps."""
        return [*self.exp_avg, *self.exp_avg_sq, self.step_count, self.skipped_steps]

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None, skip: torch.Tensor | None = None) -> float | None:
        """One Adam update of every parameter that has a gradient.

        ``skip``: a 0-d float tensor on the device, 1.0 to leave the weights and moments as they are (decided on the
        device, so a step captured in a CUDA graph can skip itself without a host sync); counted in
        ``skipped_steps``."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        params, exp_avg, exp_avg_sq = self.params, self.exp_avg, self.exp_avg_sq
        all_grads = [p.grad for p in self.params]
        if any(g is None for g in all_grads):
            keep = [i for i, g in enumerate(all_grads) if g is not None]
            if not keep:
                return loss
            params = [params[i] for i in keep]
            exp_avg = [exp_avg[i] for i in keep]
            exp_avg_sq = [exp_avg_sq[i] for i in keep]
        grads = [g for g in all_grads if g is not None]  # same order as params
        group = self.param_groups[0]
        lr, eps, weight_decay = group["lr"], group["eps"], group["weight_decay"]
        beta1, beta2 = group["betas"]
        found_inf: torch.Tensor | None = None
        if skip is not None:
            found_inf = self._found_inf.copy_(skip)
            if self.skip_nonfinite:
                torch._amp_foreach_non_finite_check_and_unscale_(grads, found_inf, self._one)
            self.skipped_steps += found_inf
            self.step_count += 1 - found_inf
        elif self.skip_nonfinite:
            found_inf = self._found_inf.zero_()
            torch._amp_foreach_non_finite_check_and_unscale_(grads, found_inf, self._one)
            self.skipped_steps += found_inf
            self.step_count += 1 - found_inf  # a skipped step does not advance Adam's bias correction
        else:
            self.step_count += 1
        if self.fused:
            try:
                torch._fused_adam_(
                    params,
                    grads,
                    exp_avg,
                    exp_avg_sq,
                    [],
                    self._steps[: len(params)],
                    lr=lr,
                    beta1=beta1,
                    beta2=beta2,
                    weight_decay=weight_decay,
                    eps=eps,
                    amsgrad=False,
                    maximize=False,
                    found_inf=found_inf,
                )
                return loss
            except (RuntimeError, NotImplementedError):  # device without the fused kernel: use the plain one
                self.fused = False
        if found_inf is not None and bool(found_inf):
            return loss
        self._foreach_step(params, grads, exp_avg, exp_avg_sq, lr, beta1, beta2, eps, weight_decay)
        return loss

    def _foreach_step(self, params, grads, exp_avg, exp_avg_sq, lr, beta1, beta2, eps, weight_decay) -> None:
        step = float(self.step_count)
        if weight_decay:
            grads = torch._foreach_add(grads, params, alpha=weight_decay)
        torch._foreach_lerp_(exp_avg, grads, 1 - beta1)
        torch._foreach_mul_(exp_avg_sq, beta2)
        torch._foreach_addcmul_(exp_avg_sq, grads, grads, 1 - beta2)
        bias1 = 1 - beta1**step
        bias2_sqrt = (1 - beta2**step) ** 0.5
        denom = torch._foreach_sqrt(exp_avg_sq)
        torch._foreach_div_(denom, bias2_sqrt)
        torch._foreach_add_(denom, eps)
        torch._foreach_addcdiv_(params, exp_avg, denom, -lr / bias1)

    # ----- checkpoints ----------------------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        group = {k: v for k, v in self.param_groups[0].items() if k != "params"}
        return {
            "step": float(self.step_count),
            "exp_avg": [t.clone() for t in self.exp_avg],
            "exp_avg_sq": [t.clone() for t in self.exp_avg_sq],
            "group": group,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if len(state["exp_avg"]) != len(self.params):
            raise ValueError(
                f"optimizer state has {len(state['exp_avg'])} parameters, this optimizer {len(self.params)}"
            )
        self.step_count.fill_(float(state["step"]))
        for dst, src in zip(self.exp_avg + self.exp_avg_sq, list(state["exp_avg"]) + list(state["exp_avg_sq"])):
            dst.copy_(src)
        self.param_groups[0].update(state.get("group", {}))
