"""The KAMoE forward pass for S models at once, from parameters stacked along a leading seed dimension.

``stacked_forward(model, params, x)`` computes what ``model(x)`` computes for each of S parameter sets: ``params``
maps each of the module's parameter names to a tensor of shape (S, *shape) and x is (S, B, F) (or (B, F), shared).
Every Dense layer becomes one batched matmul (``baddbmm``) over seeds, a KAN layer one basis evaluation and one
batched matmul, so S models cost about as many operations as one -- what makes a multi-seed sweep fast on a CPU,
where small models are bound by per-operation overhead. ``torch.func.vmap`` over ``functional_call`` gives the same
numbers but measured 0.2-0.7x the speed of training the seeds one by one here (its per-op cost on small tensors).

Covered: MLP and KAN experts (any depth), the plain single-expert model, the linear, GRN and GRKAN gates with the
dense or top-k router (sigmoid or softmax), input scaling, windows flattened for MLP/KAN experts.
:func:`unsupported_reason` names what is not (recurrent experts, other routers, shared experts); those train one seed
at a time.
"""

from __future__ import annotations

from typing import cast

import torch
import torch.nn.functional as F
from torch.autograd.function import once_differentiable

from kamoe_viz.nn.experts import KANExperts, MLPExperts
from kamoe_viz.nn.fast import native
from kamoe_viz.nn.gates import GRKANGate, GRNGate
from kamoe_viz.nn.kan import KANLinear, base_activation, bspline_basis_recursive
from kamoe_viz.nn.moe import KAMoE
from kamoe_viz.nn.routers import Router
from kamoe_viz.nn.spline_ops import dense_basis

STACKED_ROUTINGS = ("dense", "topk")  # stateless, row-wise routers: each seed's rows routed on their own


def unsupported_reason(model: KAMoE) -> str | None:
    """Why this model's structure has no stacked forward here, or None (the settings that rule batching out, such
    as recurrent experts or dropout, are checked by kamoe_viz.training.batched.unsupported_reason)."""
    cfg = model.config
    if cfg.expert not in ("mlp", "kan") or (cfg.kind == "moe" and cfg.gate not in ("linear", "grn", "grkan")):
        return f"no stacked forward for {cfg.expert} experts with a {cfg.gate} gate"
    if model.router is not None and cfg.routing not in STACKED_ROUTINGS:
        return f"routing {cfg.routing!r} trains one seed at a time (stacked: {', '.join(STACKED_ROUTINGS)})"
    if model.shared is not None:
        return "shared experts train one seed at a time"
    for m in model.modules():
        if isinstance(m, KANLinear) and m.bias is not None:
            return "KAN layers with a bias train one seed at a time"
    return None


def _linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """(S, B, in) x (S, out, in) [+ (S, out)] -> (S, B, out)."""
    if bias is None:
        return torch.bmm(x, weight.transpose(1, 2))
    return torch.baddbmm(bias.unsqueeze(1), x, weight.transpose(1, 2))


class StackedNativeKAN(torch.autograd.Function):
    """A KAN layer for S stacked weight sets on the C kernel: one kernel call per seed forward and backward, no
    dense basis matrices (which, for S seeds at once, cost more memory traffic than the kernel's whole pass)."""

    @staticmethod
    def forward(ctx, lib, x, base_weight, spline_weight, shift, inv_step, order: int, base: str):
        x = x.contiguous()
        out = torch.stack(
            [
                native.kan_forward(lib, x[s], base_weight[s], spline_weight[s], None, shift, inv_step, order, base)
                for s in range(x.shape[0])
            ]
        )
        ctx.save_for_backward(x, base_weight, spline_weight, shift, inv_step)
        ctx.lib, ctx.order, ctx.base = lib, order, base
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out):
        x, base_weight, spline_weight, shift, inv_step = ctx.saved_tensors
        need_x = ctx.needs_input_grad[1]
        grads = [
            native.kan_backward(
                ctx.lib,
                x[s],
                base_weight[s],
                spline_weight[s],
                shift,
                inv_step,
                ctx.order,
                ctx.base,
                grad_out[s],
                need_x=need_x,
            )
            for s in range(x.shape[0])
        ]
        grad_x = torch.stack([g[0] for g in grads]) if need_x else None
        return (
            None,
            grad_x,
            torch.stack([g[1] for g in grads]),
            torch.stack([g[2] for g in grads]),
            None,
            None,
            None,
            None,
        )


def _kan(layer: KANLinear, x: torch.Tensor, base_weight: torch.Tensor, spline_weight: torch.Tensor) -> torch.Tensor:
    """A KAN layer (shared grid buffers, stacked weights): (S, B, in) -> (S, B, out)."""
    S, B, n_in = x.shape
    flat = x.reshape(S * B, n_in)
    knots = layer._uniform_knots()
    lib = native.active() if knots is not None else None
    if (
        knots is not None
        and lib is not None
        and native.supports(flat, base_weight, spline_weight, layer.spline_order, layer.base_activation_name)
    ):
        return StackedNativeKAN.apply(
            lib, x, base_weight, spline_weight, knots[0], knots[1], layer.spline_order, layer.base_activation_name
        )
    if knots is not None and flat.device.type in ("cpu", "cuda"):
        basis = dense_basis(flat, knots[2], knots[3], layer.n_basis, layer.spline_order)
    else:
        basis = bspline_basis_recursive(flat, layer.grid, layer.spline_order)
    features = torch.cat([base_activation(layer.base_activation_name)(x), basis.view(S, B, -1)], dim=2)
    weight = torch.cat([base_weight, spline_weight.flatten(2)], dim=2)
    return torch.bmm(features, weight.transpose(1, 2))


def _experts(model: KAMoE, p: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """Hidden outputs (S, B, E, H)."""
    bank = model.experts
    S, B = x.shape[:2]
    E, hidden = bank.n_experts, bank.hidden
    if isinstance(bank, MLPExperts):
        z = torch.relu(_linear(x, p["experts.first.weight"], p["experts.first.bias"])).view(S, B, E, hidden[0])
        for i in range(len(hidden) - 1):
            w, b = p[f"experts.weights.{i}"], p[f"experts.biases.{i}"]  # (S, E, in, out), (S, E, 1, out)
            zz = z.permute(0, 2, 1, 3).reshape(S * E, B, -1)
            zz = torch.relu(torch.baddbmm(b.reshape(S * E, 1, -1), zz, w.reshape(S * E, *w.shape[2:])))
            z = zz.view(S, E, B, -1).permute(0, 2, 1, 3)
        return z
    if not isinstance(bank, KANExperts):
        raise TypeError(f"no stacked forward for {type(bank).__name__}")
    z = _kan(bank.first, x, p["experts.first.base_weight"], p["experts.first.spline_weight"]).view(S, B, E, hidden[0])
    if len(bank.deeper):
        outs = []
        for e, layers in enumerate(bank.deeper):
            ze = z[:, :, e]
            for d, layer in enumerate(cast(torch.nn.ModuleList, layers)):
                pre = f"experts.deeper.{e}.{d}."
                ze = _kan(cast(KANLinear, layer), ze, p[pre + "base_weight"], p[pre + "spline_weight"])
            outs.append(ze)
        z = torch.stack(outs, dim=2)
    return z


def _norm(z: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, eps: float) -> torch.Tensor:
    return torch.addcmul(bias.unsqueeze(1), F.layer_norm(z, z.shape[-1:], eps=eps), weight.unsqueeze(1))


def _gate_logits(model: KAMoE, p: dict[str, torch.Tensor], h: torch.Tensor) -> torch.Tensor:
    gate, family = model.gate, model.config.gate
    if family == "linear":
        return _linear(h, p["gate.dense.weight"], p["gate.dense.bias"])
    if not isinstance(gate, (GRNGate, GRKANGate)):
        raise TypeError(f"no stacked forward for a {family} gate")
    if family == "grn":
        eta = _linear(
            F.elu(_linear(h, p["gate.dense1.weight"], p["gate.dense1.bias"])),
            p["gate.dense2.weight"],
            p["gate.dense2.bias"],
        )
    else:
        if not isinstance(gate, GRKANGate):
            raise TypeError(f"no stacked forward for a {family} gate")
        a = _kan(gate.kan1, h, p["gate.kan1.base_weight"], p["gate.kan1.spline_weight"])
        eta = _kan(gate.kan2, a, p["gate.kan2.base_weight"], p["gate.kan2.spline_weight"])
    z = _linear(h, p["gate.skip.weight"], p["gate.skip.bias"]) + F.glu(
        _linear(eta, p["gate.glu.proj.weight"], p["gate.glu.proj.bias"]), dim=-1
    )
    return _norm(z, p["gate.norm.weight"], p["gate.norm.bias"], gate.norm.eps)


def _route(router: Router | None, logits: torch.Tensor) -> torch.Tensor:
    """The dense and top-k routers' weights, computed by their own forward (they are stateless, row-wise)."""
    if router is None:
        raise RuntimeError("a model with a gate has a router")
    return router(logits).weights


def stacked_forward(
    model: KAMoE, p: dict[str, torch.Tensor], x: torch.Tensor, n_seeds: int | None = None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """(prediction (S, B, O), routing weights (S, B, E), gate logits or None) of S stacked parameter sets on x
    (S, B, F) or shared (B, F)."""
    S = n_seeds or next(iter(p.values())).shape[0]
    if x.dim() == (3 if model.is_sequence else 2):
        x = x.unsqueeze(0).expand(S, *x.shape)
    if "input_scale" in p:
        x = x * p["input_scale"].view(S, *([1] * (x.dim() - 2)), -1)
    if model.flatten_input:
        x = x.flatten(2)
    hidden = _experts(model, p, x)
    if model.gate is None:
        return _linear(hidden[:, :, 0], p["head.weight"], p["head.bias"]), hidden.new_ones(hidden.shape[:-1]), None
    h = torch.relu(_linear(x, p["gate_input.weight"], p["gate_input.bias"]))
    logits = _gate_logits(model, p, h)
    weights = _route(model.router, logits)
    # The head is linear: mixing the experts' projected outputs, sum_e w_e (P z_e), then adding the bias equals
    # P (sum_e w_e z_e) + b. Projecting all experts is one well-shaped batched matmul (S, B*E, H) x (S, H, O), and
    # the mixing then runs on (S, B, E, O) -- small, since O is 1 or the class count.
    S, B, E, H = hidden.shape
    projected = torch.bmm(hidden.reshape(S, B * E, H), p["head.weight"].transpose(1, 2)).view(S, B, E, -1)
    prediction = (weights.unsqueeze(-1) * projected).sum(dim=-2) + p["head.bias"].unsqueeze(1)
    return prediction, weights, logits


__all__ = ["stacked_forward", "unsupported_reason"]
