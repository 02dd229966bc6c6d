"""Closed-form backward formulas shared by the fast paths: linear layers, the gated residual tail of the GRN/GRKAN
gates, the routers without parameters and the routers' auxiliary losses.

Used by :mod:`kamoe_viz.nn.fast.direct_grad` (whole training steps without autograd) and by the GRKAN gate's
fused autograd function (:mod:`kamoe_viz.nn.fast.fused_gate`). Each equals autograd's gradient to float
tolerance (tests/test_direct_grad.py).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def grad_buffer(p: torch.Tensor) -> torch.Tensor:
    """p.grad, created (zeros) if missing or not contiguous (the kernel writes through raw pointers); gradients
    are written into it, not accumulated."""
    grad = p.grad
    if grad is None or not grad.is_contiguous() or grad.shape != p.shape or grad.dtype != p.dtype:
        p.grad = grad = torch.zeros_like(p, memory_format=torch.contiguous_format)
    return grad


def linear_grads(
    grad_out: torch.Tensor,
    x: torch.Tensor,
    weight: torch.Tensor,
    grad_weight=None,
    grad_bias=None,
    need_input: bool = True,
    bias: bool = True,
):
    """(dL/dx, dL/dW, dL/db) of y = x W^T + b for 2-D x; the weight gradients are written into ``grad_weight`` and
    ``grad_bias`` when given. dL/dx may be a transposed view.

    Why two layouts: MKL computes a product whose result has a narrow last dimension several times slower than the
    transposed product (measured here: (B,300)^T (B,8) 47 us against (B,8)^T (B,300) 12 us at B=128), so for a
    layer with fewer inputs than outputs (8 features -> 300 expert units) both products run transposed."""
    out_features, in_features = weight.shape
    if in_features < out_features:
        transposed = torch.mm(x.t(), grad_out).t()
        grad_weight = transposed.contiguous() if grad_weight is None else grad_weight.copy_(transposed)
        grad_x = torch.mm(weight.t(), grad_out.t()).t() if need_input else None
    else:
        grad_weight = torch.mm(grad_out.t(), x, out=grad_weight)
        grad_x = grad_out.mm(weight) if need_input else None
    grad_bias = torch.sum(grad_out, 0, out=grad_bias) if bias else None
    return grad_x, grad_weight, grad_bias


def linear_backward(
    grad_out: torch.Tensor, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, need_input: bool = True
) -> torch.Tensor | None:
    """Writes the parameter gradients of y = x W^T + b into their ``.grad``; returns dL/dx if needed."""
    grad_bias = None if bias is None else grad_buffer(bias)
    return linear_grads(grad_out, x, weight, grad_buffer(weight), grad_bias, need_input, bias is not None)[0]


def present(grad: torch.Tensor | None, what: str) -> torch.Tensor:
    """A gradient this step needs; None here means the step was set up without input gradients."""
    if grad is None:
        raise RuntimeError(f"direct-gradient step: {what} was not computed (input gradients disabled)")
    return grad


def residual_tail(h, eta, glu_weight, glu_bias, skip_weight, skip_bias, norm_weight, norm_bias, eps: float):
    """Logits LayerNorm(skip(h) + GLU(eta)) of the gated residual gates, and what their backward pass needs."""
    projected = torch.addmm(glu_bias, eta, glu_weight.t())
    z = torch.addmm(skip_bias, h, skip_weight.t()).add_(F.glu(projected, dim=-1))
    logits, mean, rstd = torch.native_layer_norm(z, [z.shape[-1]], norm_weight, norm_bias, eps)
    return logits, (projected, z, mean, rstd)


def residual_tail_backward(
    grad_logits, h, eta, saved, glu_weight, skip_weight, norm_weight, norm_bias, out: tuple | None = None
):
    """(dL/dh through the skip layer, dL/deta, the six weight gradients) of :func:`residual_tail`; with ``out``
    (glu weight, glu bias, skip weight, skip bias, norm weight, norm bias) the weight gradients are written there."""
    projected, z, mean, rstd = saved
    out = out or (None,) * 6
    grad_z, grad_norm_w, grad_norm_b = torch.ops.aten.native_layer_norm_backward(
        grad_logits.contiguous(), z, [z.shape[-1]], mean, rstd, norm_weight, norm_bias, [True, True, True]
    )
    if out[4] is not None:
        grad_norm_w, grad_norm_b = out[4].copy_(grad_norm_w), out[5].copy_(grad_norm_b)
    grad_h, grad_skip_w, grad_skip_b = linear_grads(grad_z, h, skip_weight, out[2], out[3])
    grad_projected = torch.ops.aten.glu_backward(grad_z, projected, -1)
    grad_eta, grad_glu_w, grad_glu_b = linear_grads(grad_projected, eta, glu_weight, out[0], out[1])
    return grad_h, grad_eta, (grad_glu_w, grad_glu_b, grad_skip_w, grad_skip_b, grad_norm_w, grad_norm_b)


CLOSED_FORM_ROUTERS = ("dense", "topk", "switch", "expert_choice", "sigmoid_bias", "relu")


def router_logit_grad(router, logits: torch.Tensor, weights: torch.Tensor, grad_weights: torch.Tensor):
    """dL/dlogits of a router in :data:`CLOSED_FORM_ROUTERS` from its weights. Each kept weight is a softmax
    probability or a sigmoid of the logits (softmax and sigmoid are never exactly 0, so kept = weight > 0) and the
    selection itself has no gradient; relu's weight is the logit where positive."""
    name = router.name
    if name == "relu":
        return torch.ops.aten.threshold_backward(grad_weights, logits, 0)
    kept = weights > 0
    if name == "sigmoid_bias" or (name == "topk" and router.activation == "sigmoid"):
        affinity = torch.sigmoid(logits)
        grad = grad_weights * kept
        if name == "sigmoid_bias" and router.top_k > 1:  # w = s / sum(s) over the selected
            total = (affinity * kept).sum(-1, keepdim=True)
            grad = (grad_weights - (grad_weights * weights).sum(-1, keepdim=True)) / total * kept
        return torch.ops.aten.sigmoid_backward(grad, affinity)
    if name == "topk" and router.top_k > 1:  # softmax over the kept logits: weights are that softmax
        return torch._softmax_backward_data(grad_weights, weights, -1, weights.dtype)
    probs = torch.softmax(logits, -1)  # topk k = 1, switch, expert_choice: w = p * kept
    return torch._softmax_backward_data(grad_weights * kept, probs, -1, probs.dtype)


def noisy_topk_forward(router, logits: torch.Tensor):
    """(weights, saved) of :class:`~kamoe_viz.nn.routers.NoisyTopKRouter` in training: its own
    :meth:`~kamoe_viz.nn.routers.NoisyTopKRouter.noisy_scores` (scores = logits + eps * softplus(logits W^T + b)),
    then the top-k softmax of the scores. (B, E) logits."""
    from kamoe_viz.nn.routers import keep_mask, topk_softmax

    if router.training:
        scores, pre, noise = router.noisy_scores(logits)
    else:  # no noise at inference: the noise layer gets no gradient
        scores, pre, noise = logits, logits, torch.zeros_like(logits)
    keep = keep_mask(scores, router.top_k)
    weights = topk_softmax(scores, keep, router.top_k)
    return weights, (logits, pre, noise, scores, keep)


def noisy_topk_backward(router, saved, weights: torch.Tensor, grad_weights: torch.Tensor) -> torch.Tensor:
    """dL/dlogits of :func:`noisy_topk_forward`; writes the noise layer's weight and bias gradients. The scores'
    gradient is the top-k softmax's (as :func:`router_logit_grad`); d softplus(z)/dz = sigmoid(z)."""
    logits, pre, noise, scores, keep = saved
    if router.top_k > 1:
        grad_scores = torch._softmax_backward_data(grad_weights, weights, -1, weights.dtype)
    else:
        probs = torch.softmax(scores, -1)
        grad_scores = torch._softmax_backward_data(grad_weights * keep, probs, -1, probs.dtype)
    grad_pre = grad_scores * noise * torch.sigmoid(pre)
    torch.mm(grad_pre.t(), logits, out=grad_buffer(router.noise.weight))
    torch.sum(grad_pre, 0, out=grad_buffer(router.noise.bias))
    return grad_scores.addmm_(grad_pre, router.noise.weight)


def aux_loss_gradient(logits: torch.Tensor, weights: torch.Tensor, aux_weights: dict[str, float]) -> torch.Tensor:
    """d/dlogits of the weighted auxiliary losses of :mod:`kamoe_viz.nn.routers` for (N, E) logits, in closed form:
    balance E * sum_i f_i P_i with f (the top-1 shares of the weights) constant: dL/dP_ni = c_i = a E f_i / N, so
    through the softmax p_n * (c - p_n . c); z-loss mean_n lse_n^2: dL/dlogits_n = 2 b lse_n / N * p_n. Both in one
    expression, p * (c - p c + 2 b lse / N), since a small step is bound by the number of ops."""
    rows, n_experts = logits.shape
    probs = torch.softmax(logits, -1)
    balance, z = aux_weights.get("balance_loss", 0.0), aux_weights.get("z_loss", 0.0)
    if not rows or (balance <= 0 and z <= 0):
        return torch.zeros_like(logits)
    inner = None
    if balance > 0:
        routed = (weights > 0).any(-1).to(probs.dtype)
        counts = torch.zeros(n_experts, dtype=probs.dtype, device=probs.device).index_add_(
            0, weights.argmax(-1), routed
        )
        c = counts.mul_(balance * n_experts / rows / routed.sum().clamp_min(1))
        inner = (c - torch.mv(probs, c).unsqueeze(-1)).expand_as(probs)
    if z > 0:
        lse = torch.logsumexp(logits, -1, keepdim=True).mul_(2.0 * z / rows)
        inner = lse if inner is None else inner + lse
    assert inner is not None
    return probs * inner
