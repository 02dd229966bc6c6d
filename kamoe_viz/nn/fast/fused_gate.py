"""The GRKAN gate's logits as one autograd function, on the native KAN kernel (CPU, float32).

    a = KAN1(h); eta = KAN2(a); z = Dense_skip(h) + GLU(eta); logits = LayerNorm(z)

Why: at small batches a training step costs what its ops cost to dispatch and record, not what they compute.
Module by module, this gate is ~10 recorded ops forward and ~15 backward nodes; as one function it is one node
whose backward calls the ops' own backward kernels directly (``native_layer_norm_backward``, ``glu_backward``) and
the KAN kernel twice. Same values and gradients as the modules (tests/test_native_kan.py).
"""

from __future__ import annotations

import torch
from torch.autograd.function import once_differentiable

from kamoe_viz.nn.fast import native
from kamoe_viz.nn.fast.closed_form import residual_tail, residual_tail_backward


class GRKANLogitsFunction(torch.autograd.Function):
    @staticmethod
    def forward(
        ctx,
        lib,
        h,
        base1,
        spline1,
        shift1,
        inv1,
        base2,
        spline2,
        shift2,
        inv2,
        glu_weight,
        glu_bias,
        skip_weight,
        skip_bias,
        norm_weight,
        norm_bias,
        layers: tuple,
        eps: float,
    ):
        (order1, act1), (order2, act2) = layers
        h = h.contiguous()
        a = native.kan_forward(lib, h, base1, spline1, None, shift1, inv1, order1, act1)
        eta = native.kan_forward(lib, a, base2, spline2, None, shift2, inv2, order2, act2)
        out, tail = residual_tail(h, eta, glu_weight, glu_bias, skip_weight, skip_bias, norm_weight, norm_bias, eps)
        ctx.save_for_backward(
            h,
            a,
            eta,
            *tail,
            base1,
            spline1,
            shift1,
            inv1,
            base2,
            spline2,
            shift2,
            inv2,
            glu_weight,
            skip_weight,
            norm_weight,
            norm_bias,
        )
        ctx.lib, ctx.layers = lib, layers
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out):
        (
            h,
            a,
            eta,
            projected,
            z,
            mean,
            rstd,
            base1,
            spline1,
            shift1,
            inv1,
            base2,
            spline2,
            shift2,
            inv2,
            glu_weight,
            skip_weight,
            norm_weight,
            norm_bias,
        ) = ctx.saved_tensors
        (order1, act1), (order2, act2) = ctx.layers
        grad_h, grad_eta, (grad_glu_w, grad_glu_b, grad_skip_w, grad_skip_b, grad_norm_w, grad_norm_b) = (
            residual_tail_backward(
                grad_out, h, eta, (projected, z, mean, rstd), glu_weight, skip_weight, norm_weight, norm_bias
            )
        )
        grad_a, grad_base2, grad_spline2 = native.kan_backward(
            ctx.lib, a, base2, spline2, shift2, inv2, order2, act2, grad_eta
        )
        grad_h1, grad_base1, grad_spline1 = native.kan_backward(
            ctx.lib, h, base1, spline1, shift1, inv1, order1, act1, grad_a
        )
        grad_h.add_(grad_h1)
        return (
            None,
            grad_h,
            grad_base1,
            grad_spline1,
            None,
            None,
            grad_base2,
            grad_spline2,
            None,
            None,
            grad_glu_w,
            grad_glu_b,
            grad_skip_w,
            grad_skip_b,
            grad_norm_w,
            grad_norm_b,
            None,
            None,
        )


def grkan_logits(gate, h: torch.Tensor) -> torch.Tensor | None:
    """The gate's logits through :class:`GRKANLogitsFunction`, or None where it does not apply (no kernel, not
    CPU float32, active dropout, a KAN layer with a bias or a non-uniform grid): then the modules run one by one."""
    kan1, kan2 = gate.kan1, gate.kan2
    if (gate.dropout.p > 0 and gate.training) or kan1.bias is not None or kan2.bias is not None:
        return None
    flat = h.reshape(-1, h.shape[-1])
    lib = kan1._native_kernel(flat)
    if lib is None or not native.supports(
        flat, kan2.base_weight, kan2.spline_weight, kan2.spline_order, kan2.base_activation_name
    ):
        return None
    knots1, knots2 = kan1._uniform_knots(), kan2._uniform_knots()
    if knots1 is None or knots2 is None:
        return None
    glu, skip, norm = gate.glu.proj, gate.skip, gate.norm
    if norm.weight is None or norm.bias is None:
        return None
    out = GRKANLogitsFunction.apply(
        lib,
        flat,
        kan1.base_weight,
        kan1.spline_weight,
        knots1[0],
        knots1[1],
        kan2.base_weight,
        kan2.spline_weight,
        knots2[0],
        knots2[1],
        glu.weight,
        glu.bias,
        skip.weight,
        skip.bias,
        norm.weight,
        norm.bias,
        ((kan1.spline_order, kan1.base_activation_name), (kan2.spline_order, kan2.base_activation_name)),
        norm.eps,
    )
    return out if h.dim() == 2 else out.reshape(*h.shape[:-1], out.shape[-1])
