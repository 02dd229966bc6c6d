"""Closed-form forward and backward of KAN layers and of a bank of experts (MLP or KAN), for
:mod:`kamoe_viz.nn.fast.direct_grad`. One :class:`BankGradients` serves the routed experts and another the shared
(always-on) experts: both are the same kind of module (:func:`kamoe_viz.nn.experts.build_experts`) and see the same
input x~; only how their hidden outputs are mixed differs, which the caller handles.
"""

from __future__ import annotations

from typing import Any

import torch

from kamoe_viz.nn.fast import native
from kamoe_viz.nn.fast.closed_form import grad_buffer, linear_backward, present
from kamoe_viz.nn.spline_ops import uniform_kan_backward, uniform_kan_forward

Knots = dict[Any, Any]  # KAN layer -> its uniform knots (shift, inv_step, ...)


def kan_forward(lib: Any, layer: Any, x: torch.Tensor, knots: Knots, need_input: bool = True) -> tuple[Any, Any]:
    """(output, state for :func:`kan_backward`): the native kernel when the run has it, else the PyTorch path."""
    shift, inv_step = knots[layer][:2]
    if lib is None:
        return uniform_kan_forward(
            x,
            layer.base_weight,
            layer.spline_weight,
            layer.bias,
            shift,
            inv_step,
            layer.spline_order,
            layer.base_activation_name,
            need_input,
        )
    out = native.kan_forward(
        lib,
        x,
        layer.base_weight,
        layer.spline_weight,
        layer.bias,
        shift,
        inv_step,
        layer.spline_order,
        layer.base_activation_name,
    )
    return out, x


def kan_backward(
    lib: Any, layer: Any, state: Any, grad_out: torch.Tensor, knots: Knots, need_input: bool = True
) -> torch.Tensor | None:
    """Writes the layer's parameter gradients; returns dL/dx if needed."""
    grad_base, grad_spline = grad_buffer(layer.base_weight), grad_buffer(layer.spline_weight)
    if lib is None:
        grad_x, base, spline, _ = uniform_kan_backward(state, grad_out, need_input)
        grad_base.copy_(base)
        grad_spline.copy_(spline)
    else:
        shift, inv_step = knots[layer][:2]
        grad_x, _, _ = native.kan_backward(
            lib,
            state,
            layer.base_weight,
            layer.spline_weight,
            shift,
            inv_step,
            layer.spline_order,
            layer.base_activation_name,
            grad_out,
            need_input,
            True,
            weight_grads=(grad_base, grad_spline),
        )
    if layer.bias is not None:
        torch.sum(grad_out, 0, out=grad_buffer(layer.bias))
    return grad_x


class BankGradients:
    """A bank of E experts (:class:`~kamoe_viz.nn.experts.MLPExperts` or :class:`~kamoe_viz.nn.experts.KANExperts`):
    ``forward`` gives hidden outputs (B, E, H) and what ``backward`` needs; ``backward`` writes the bank's
    parameter gradients and returns dL/dx~ when ``need_input_grad``."""

    def __init__(self, bank: Any, kind: str, lib: Any, need_input_grad: bool) -> None:
        self.kind, self.lib, self.need_input_grad = kind, lib, need_input_grad
        self.n_experts, self.width = bank.n_experts, bank.hidden[0]
        if kind == "kan":
            self.first_kan, self.deeper_kan = bank.first, [list(stack) for stack in bank.deeper]
        else:
            self.first = (bank.first.weight, bank.first.bias)
            self.deeper = list(zip(bank.weights, bank.biases))

    def forward(self, xs: torch.Tensor, knots: Knots) -> tuple[torch.Tensor, Any]:
        batch, n_experts, width = xs.shape[0], self.n_experts, self.width
        if self.kind == "kan":
            first, first_state = kan_forward(self.lib, self.first_kan, xs, knots, self.need_input_grad)
            if not self.deeper_kan:
                return first.view(batch, n_experts, width), (first, first_state, None)
            chains, outs = [], []
            for e, stack in enumerate(self.deeper_kan):
                z = first.view(batch, n_experts, width)[:, e].contiguous()
                chain = []  # each layer's backward state
                for layer in stack:
                    z, state = kan_forward(self.lib, layer, z, knots)
                    chain.append(state)
                chains.append(chain)
                outs.append(z)
            return torch.stack(outs, dim=1), (first, first_state, chains)
        first = torch.addmm(self.first[1], xs, self.first[0].t()).relu_()
        z = first.view(batch, n_experts, width)
        if not self.deeper:
            return z, [first]
        layers = [z.transpose(0, 1)]  # (E, B, H)
        for weight, bias in self.deeper:
            layers.append(torch.baddbmm(bias, layers[-1], weight).relu_())
        return layers[-1].transpose(0, 1), [first, *layers]

    def backward(self, grad_hidden: torch.Tensor, xs: torch.Tensor, saved: Any, knots: Knots) -> torch.Tensor | None:
        batch, need_input = xs.shape[0], self.need_input_grad
        if self.kind == "kan":
            first, first_state, chains = saved
            if chains is None:
                grad_first = grad_hidden.reshape(batch, -1)
            else:
                grad_first = torch.empty_like(first).view(batch, self.n_experts, -1)
                for e, (stack, chain) in enumerate(zip(self.deeper_kan, chains)):
                    grad: torch.Tensor | None = grad_hidden[:, e]
                    for depth in range(len(stack) - 1, -1, -1):
                        grad = kan_backward(self.lib, stack[depth], chain[depth], present(grad, "dL/dz"), knots)
                    grad_first[:, e] = present(grad, "dL/dz")
                grad_first = grad_first.view(batch, -1)
            return kan_backward(self.lib, self.first_kan, first_state, grad_first, knots, need_input)
        first, layers = saved[0], saved[1:]
        grad = grad_hidden
        if layers:
            grad = grad.transpose(0, 1)  # (E, B, H)
            for depth in range(len(self.deeper) - 1, -1, -1):
                weight, bias = self.deeper[depth]
                grad = torch.ops.aten.threshold_backward(grad, layers[depth + 1], 0)
                torch.bmm(layers[depth].transpose(1, 2), grad, out=grad_buffer(weight))
                torch.sum(grad, 1, keepdim=True, out=grad_buffer(bias))
                grad = torch.bmm(grad, weight.transpose(1, 2))
            grad = grad.transpose(0, 1)
        grad = torch.ops.aten.threshold_backward(grad.reshape(batch, -1), first, 0)
        return linear_backward(grad, xs, *self.first, need_input)


__all__ = ["BankGradients", "kan_backward", "kan_forward"]
