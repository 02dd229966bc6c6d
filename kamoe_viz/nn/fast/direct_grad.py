"""A training step's loss and gradients in closed form, without autograd (CPU, float32).

Why: a small model's step on the CPU costs what its ops cost to dispatch, record and replay, not what they compute.
The reference configuration at batch 32 is about 1 MFLOP, but eager autograd runs ~45 ops forward and ~60 graph
nodes backward for it, at several microseconds each. Here the forward pass keeps what the backward pass needs, and
the backward pass is written out layer by layer: each parameter's gradient goes straight into ``p.grad`` (``out=``
matmuls), with no graph to build, no AccumulateGrad and no recorded views. The loss and the gradients equal
:func:`kamoe_viz.training.evaluation.task_loss` and autograd's to float tolerance (tests/test_direct_grad.py).

Covered: MLP experts and KAN experts (any depth), the linear, GRN and GRKAN gates, sigmoid and softmax outputs,
input scaling, the standard single-expert model, tabular inputs and flattened windows, MSE and cross-entropy. KAN
layers run on the native kernel (:mod:`kamoe_viz.nn.fast.native`) when the run has it, else on the PyTorch path's
functions (:mod:`kamoe_viz.nn.spline_ops`), as the modules do. The layers' backward formulas live in
:mod:`kamoe_viz.nn.fast.closed_form`. Anything else (recurrent experts, active dropout, shared experts, hooks on a
layer) is left to autograd: :func:`unsupported_reason` says why; so is a batch while a KAN layer's grid is not
uniform.
"""
from __future__ import annotations

import os

import torch
import torch.nn.functional as F

from kamoe_viz.nn.fast import native
from kamoe_viz.nn.fast.closed_form import (
    CLOSED_FORM_ROUTERS,
    aux_loss_gradient,
    grad_buffer,
    linear_backward,
    present,
    residual_tail,
    residual_tail_backward,
    router_logit_grad,
)
from kamoe_viz.nn.hooks import has_hooks
from kamoe_viz.nn.spline_ops import uniform_kan_backward, uniform_kan_forward

SWITCH_ENV = "KAMOE_DIRECT_GRADIENTS"  # "0": always autograd (to compare, or to rule this path out)


# ----- what the direct path covers ----------------------------------------------------------------------------------
def unsupported_reason(model, task: str, lib) -> str | None:
    """Why :class:`DirectGradients` cannot train ``model`` (a KAMoE) on ``task``, or None if it can.
    ``lib``: the native KAN kernel the run uses (None: the PyTorch path for KAN layers)."""
    if os.environ.get(SWITCH_ENV, "1").strip() == "0":
        return f"{SWITCH_ENV}=0"
    params = list(model.parameters())
    if any(p.device.type != "cpu" or p.dtype != torch.float32 for p in params):
        return "the model is not on the CPU in float32"
    if not all(p.requires_grad for p in params):
        return "some parameters are frozen"
    if model.config.expert not in ("mlp", "kan"):
        return f"{model.config.expert} experts"
    if task not in ("regression", "classification"):
        return f"task {task!r}"
    gate = model.gate
    if getattr(model, "shared", None) is not None:
        return "shared experts"
    if has_hooks(model):
        return "hooks registered on the model's layers"
    if gate is not None:
        if getattr(gate, "dropout", None) is not None and gate.dropout.p > 0:
            return "gate dropout"
        if gate.family not in ("linear", "grn", "grkan"):
            return f"{gate.family} gate"
        if gate.family in ("grn", "grkan") and (gate.norm.weight is None or gate.norm.bias is None):
            return "a LayerNorm without affine weights"
    for ref in model.kan_layers():  # on the kernel where it applies, else on the PyTorch path's functions
        layer = ref.layer
        if lib is not None and not native.supports(layer.base_weight, layer.base_weight, layer.spline_weight,
                                                   layer.spline_order, layer.base_activation_name):
            return f"KAN layer {ref.name} (spline order {layer.spline_order}, {layer.base_activation_name} base)"
    return None


class DirectGradients:
    """``step(x, y)`` computes the loss of a batch and writes every parameter's gradient into ``p.grad``
    (overwriting it); it returns the loss (0-d tensor), or None without touching anything when this batch must go
    through autograd (a KAN layer's grid is not uniform, e.g. after a grid update by least squares).

    The model's parameters are looked up once here (module attribute access is slow Python); training updates
    them in place, so they stay the same tensors."""

    def __init__(self, model, task: str, lib, aux_weights: dict[str, float] | None = None) -> None:
        """``aux_weights``: weights of the routers' auxiliary losses (``balance_loss``, ``z_loss``) added to the
        loss; a router other than dense, or an auxiliary loss, runs on a small autograd graph of its own (logits ->
        weights and losses), the rest of the model stays in closed form."""
        reason = unsupported_reason(model, task, lib)
        if reason is not None:
            raise ValueError(f"direct gradients do not cover this model: {reason}")
        self.task, self.lib = task, lib
        self.kan_layers = [ref.layer for ref in model.kan_layers()]
        self.scale = model.input_scale
        self.flatten = model.flatten_input
        self.need_input_grad = self.scale is not None
        self.head = (model.head.weight, model.head.bias)
        experts = model.experts
        self.expert_kind, self.n_experts, self.width = model.config.expert, experts.n_experts, experts.hidden[0]
        if self.expert_kind == "kan":
            self.first_kan, self.deeper_kan = experts.first, [list(stack) for stack in experts.deeper]
        else:
            self.first = (experts.first.weight, experts.first.bias)
            self.deeper = list(zip(experts.weights, experts.biases))
        gate = model.gate
        self.gate_family = None if gate is None else gate.family
        if gate is not None:
            self.gate_input = (model.gate_input.weight, model.gate_input.bias)
            self.router = model.router
            self.aux_weights = {k: float(v) for k, v in (aux_weights or {}).items() if v > 0}
            # routers with parameters or noise (noisy_topk) run as a small autograd graph from the logits; the
            # others in closed form (router_logit_grad)
            self.router_graph = self.router.name not in CLOSED_FORM_ROUTERS
            self.router_params = [p for p in self.router.parameters() if p.requires_grad]
            self.sigmoid = getattr(self.router, "activation", "") == "sigmoid"
            if gate.family == "linear":
                self.dense = (gate.dense.weight, gate.dense.bias)
            else:
                glu, skip, norm = gate.glu.proj, gate.skip, gate.norm
                self.tail = (glu.weight, glu.bias, skip.weight, skip.bias, norm.weight, norm.bias)
                self.norm_eps = norm.eps
                if gate.family == "grn":
                    self.dense1, self.dense2 = (gate.dense1.weight, gate.dense1.bias), (gate.dense2.weight,
                                                                                        gate.dense2.bias)
                else:
                    self.kan1, self.kan2 = gate.kan1, gate.kan2

    @torch.no_grad()
    def step(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor | None:
        knots = {}
        for layer in self.kan_layers:
            layer_knots = layer._uniform_knots()
            if layer_knots is None:
                return None
            knots[layer] = layer_knots
        scale = self.scale
        xs = x * scale if scale is not None else x
        if self.flatten:
            xs = xs.flatten(1)
        xs = xs.contiguous()
        batch = xs.shape[0]
        hidden, experts_saved = self._experts_forward(xs, knots)  # (B, E, H)
        if self.gate_family is not None:
            h = torch.addmm(self.gate_input[1], xs, self.gate_input[0].t()).relu_()
            logits, gate_saved = self._gate_logits(h, knots)
            if self.router_graph:
                leaf, routed = self._route(logits)
                weights = routed.weights.detach()
            elif self.router.name != "dense":
                weights = self.router(logits).weights
            else:
                weights = torch.sigmoid(logits) if self.sigmoid else torch.softmax(logits, -1)
            mixed = (hidden * weights.unsqueeze(2)).sum(1)  # faster than a bmm of (1, E) rows here
        else:
            mixed = hidden.reshape(batch, -1)
        prediction = torch.addmm(self.head[1], mixed, self.head[0].t())
        loss, grad_prediction = self._loss(prediction, y)

        grad_mixed = present(linear_backward(grad_prediction, mixed, *self.head), "dL/d(mixed)")
        grad_xs_gate = None
        if self.gate_family is not None:
            grad_mixed = grad_mixed.unsqueeze(1)
            grad_weights = (hidden * grad_mixed).sum(2)
            grad_hidden = weights.unsqueeze(2) * grad_mixed
            if self.router_graph:
                grad_logits = self._route_backward(leaf, routed.weights, grad_weights)
            elif self.router.name != "dense":
                grad_logits = router_logit_grad(self.router, logits, weights, grad_weights)
            elif self.sigmoid:
                grad_logits = torch.ops.aten.sigmoid_backward(grad_weights, weights)
            else:
                grad_logits = torch._softmax_backward_data(grad_weights, weights, -1, weights.dtype)
            if self.aux_weights:
                grad_logits = grad_logits + aux_loss_gradient(logits, weights, self.aux_weights)
            grad_h = self._gate_backward(grad_logits, h, gate_saved, knots)
            grad_h = torch.ops.aten.threshold_backward(grad_h, h, 0)
            grad_xs_gate = linear_backward(grad_h, xs, *self.gate_input, self.need_input_grad)
        else:
            grad_hidden = grad_mixed.unsqueeze(1)
        grad_xs = self._experts_backward(grad_hidden, xs, experts_saved, knots)
        if scale is not None:  # dL/dW of x~ = W * x: sum over rows (and window steps) of dL/dx~ * x
            grad_xs = present(grad_xs, "dL/dx~ of the experts")
            if grad_xs_gate is not None:
                grad_xs.add_(grad_xs_gate)
            per_column = grad_xs.mul_(x.reshape(batch, -1))
            if per_column.shape[1] == scale.shape[0]:
                torch.sum(per_column, 0, out=grad_buffer(scale))
            else:
                grad_buffer(scale).copy_(per_column.sum(0).view(-1, scale.shape[0]).sum(0))
        return loss

    # ----- routers: a small autograd graph from the logits --------------------------------------------------------
    def _route(self, logits: torch.Tensor):
        """(leaf logits, the router's output), recorded by autograd."""
        with torch.enable_grad():
            leaf = logits.detach().requires_grad_()
            return leaf, self.router(leaf)

    def _route_backward(self, leaf, weights, grad_weights: torch.Tensor) -> torch.Tensor:
        """dL/dlogits (and the router's own parameter gradients, written into their ``.grad``)."""
        for p in self.router_params:  # autograd accumulates: start them from zero
            grad_buffer(p).zero_()
        with torch.enable_grad():
            torch.autograd.backward([weights], [grad_weights])
        return leaf.grad

    # ----- loss ---------------------------------------------------------------------------------------------------
    def _loss(self, prediction: torch.Tensor, y: torch.Tensor):
        """The loss of :func:`~kamoe_viz.training.evaluation.task_loss` and its gradient w.r.t. the prediction."""
        if self.task == "classification":
            logits, labels = prediction.reshape(-1, prediction.shape[-1]), y.reshape(-1)
            loss = F.cross_entropy(logits, labels)
            grad = torch.softmax(logits, -1)
            grad.scatter_add_(1, labels.unsqueeze(1), grad.new_full((labels.shape[0], 1), -1.0))
            return loss, grad.div_(labels.shape[0]).view_as(prediction)
        if prediction.shape != y.shape:  # Trainer checks this up front; autograd's loss would broadcast
            raise ValueError(f"prediction of shape {tuple(prediction.shape)} and targets of shape {tuple(y.shape)} "
                             "differ")
        diff = (prediction - y).reshape(-1)
        loss = torch.dot(diff, diff).div_(diff.shape[0])
        return loss, diff.mul_(2.0 / diff.shape[0]).view_as(prediction)

    # ----- KAN layers: the native kernel, else the PyTorch path's functions ---------------------------------------
    def _kan(self, layer, x: torch.Tensor, knots, need_input: bool = True):
        """(output, state for :meth:`_kan_backward`)."""
        shift, inv_step = knots[layer][:2]
        if self.lib is None:
            return uniform_kan_forward(x, layer.base_weight, layer.spline_weight, layer.bias, shift, inv_step,
                                       layer.spline_order, layer.base_activation_name, need_input)
        out = native.kan_forward(self.lib, x, layer.base_weight, layer.spline_weight, layer.bias, shift, inv_step,
                                 layer.spline_order, layer.base_activation_name)
        return out, x

    def _kan_backward(self, layer, state, grad_out: torch.Tensor, knots, need_input: bool = True):
        """Writes the layer's parameter gradients; returns dL/dx if needed."""
        grad_base, grad_spline = grad_buffer(layer.base_weight), grad_buffer(layer.spline_weight)
        if self.lib is None:
            grad_x, base, spline, _ = uniform_kan_backward(state, grad_out, need_input)
            grad_base.copy_(base)
            grad_spline.copy_(spline)
        else:
            shift, inv_step = knots[layer][:2]
            grad_x, _, _ = native.kan_backward(
                self.lib, state, layer.base_weight, layer.spline_weight, shift, inv_step, layer.spline_order,
                layer.base_activation_name, grad_out, need_input, True, weight_grads=(grad_base, grad_spline))
        if layer.bias is not None:
            torch.sum(grad_out, 0, out=grad_buffer(layer.bias))
        return grad_x

    # ----- experts ------------------------------------------------------------------------------------------------
    def _experts_forward(self, xs: torch.Tensor, knots):
        batch, n_experts, width = xs.shape[0], self.n_experts, self.width
        if self.expert_kind == "kan":
            first, first_state = self._kan(self.first_kan, xs, knots, self.need_input_grad)
            if not self.deeper_kan:
                return first.view(batch, n_experts, width), (first, first_state, None)
            chains, outs = [], []
            for e, stack in enumerate(self.deeper_kan):
                z = first.view(batch, n_experts, width)[:, e].contiguous()
                chain = []  # each layer's backward state
                for layer in stack:
                    z, state = self._kan(layer, z, knots)
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

    def _experts_backward(self, grad_hidden: torch.Tensor, xs: torch.Tensor, saved, knots) -> torch.Tensor | None:
        batch, need_input = xs.shape[0], self.need_input_grad
        if self.expert_kind == "kan":
            first, first_state, chains = saved
            if chains is None:
                grad_first = grad_hidden.reshape(batch, -1)
            else:
                grad_first = torch.empty_like(first).view(batch, self.n_experts, -1)
                for e, (stack, chain) in enumerate(zip(self.deeper_kan, chains)):
                    grad = grad_hidden[:, e]
                    for depth in range(len(stack) - 1, -1, -1):
                        grad = self._kan_backward(stack[depth], chain[depth], grad, knots)
                    grad_first[:, e] = grad
                grad_first = grad_first.view(batch, -1)
            return self._kan_backward(self.first_kan, first_state, grad_first, knots, need_input)
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

    # ----- gates --------------------------------------------------------------------------------------------------
    def _gate_logits(self, h: torch.Tensor, knots):
        if self.gate_family == "linear":
            return torch.addmm(self.dense[1], h, self.dense[0].t()), None
        if self.gate_family == "grn":
            pre = torch.addmm(self.dense1[1], h, self.dense1[0].t())
            a = F.elu(pre)
            eta = torch.addmm(self.dense2[1], a, self.dense2[0].t())
        else:
            a, pre = self._kan(self.kan1, h, knots)  # pre: the first KAN layer's backward state
            eta, a = self._kan(self.kan2, a, knots)  # a: the second's (native kernel: its input)
        logits, tail = residual_tail(h, eta, *self.tail, self.norm_eps)
        return logits, (pre, a, eta, tail)

    def _gate_backward(self, grad_logits: torch.Tensor, h: torch.Tensor, saved, knots) -> torch.Tensor:
        if self.gate_family == "linear":
            return present(linear_backward(grad_logits, h, *self.dense), "dL/dh of the linear gate")
        pre, a, eta, tail = saved
        glu_w, _, skip_w, _, norm_w, norm_b = self.tail
        grad_h, grad_eta, _ = residual_tail_backward(grad_logits, h, eta, tail, glu_w, skip_w, norm_w, norm_b,
                                                     tuple(grad_buffer(p) for p in self.tail))
        if self.gate_family == "grn":
            grad_a = linear_backward(grad_eta, a, *self.dense2)
            grad_pre = torch.ops.aten.elu_backward(grad_a, 1.0, 1, 1.0, False, pre)
            return grad_h.add_(linear_backward(grad_pre, h, *self.dense1))
        grad_a = self._kan_backward(self.kan2, a, grad_eta, knots)
        return grad_h.add_(self._kan_backward(self.kan1, pre, grad_a, knots))
