"""A training step's loss and gradients in closed form, without autograd (CPU, float32).

Why: a small model's step on the CPU costs what its ops cost to dispatch, record and replay, not what they compute.
The reference configuration at batch 32 is about 1 MFLOP, but eager autograd runs ~45 ops forward and ~60 graph
nodes backward for it, at several microseconds each. Here the forward pass keeps what the backward pass needs, and
the backward pass is written out layer by layer: each parameter's gradient goes straight into ``p.grad`` (``out=``
matmuls), with no graph to build, no AccumulateGrad and no recorded views. The loss and the gradients equal
:func:`kamoe_viz.training.evaluation.task_loss` and autograd's to float tolerance (tests/test_direct_grad.py).

Covered: MLP experts and KAN experts (any depth), shared (always-on) experts beside them, the linear, GRN and GRKAN
gates, sigmoid and softmax outputs, input scaling, the standard single-expert model, tabular inputs and flattened
windows, MSE and cross-entropy. KAN layers run on the native kernel (:mod:`kamoe_viz.nn.fast.native`) when the run
has it, else on the PyTorch path's functions (:mod:`kamoe_viz.nn.spline_ops`), as the modules do. The layers'
backward formulas live in :mod:`kamoe_viz.nn.fast.closed_form` and :mod:`kamoe_viz.nn.fast.expert_grad`. Anything
else (recurrent experts, active dropout, hooks on a layer) is left to autograd: :func:`unsupported_reason` says why;
so is a batch while a KAN layer's grid is not uniform.
"""

from __future__ import annotations

import math
import os
from typing import cast

import torch
import torch.nn.functional as F

from kamoe_viz.nn.fast import native
from kamoe_viz.nn.fast.closed_form import (
    CLOSED_FORM_ROUTERS,
    aux_loss_gradient,
    grad_buffer,
    linear_backward,
    noisy_topk_backward,
    noisy_topk_forward,
    present,
    residual_tail,
    residual_tail_backward,
    router_logit_grad,
)
from kamoe_viz.nn.fast.expert_grad import BankGradients, kan_backward, kan_forward
from kamoe_viz.nn.hooks import has_hooks

SWITCH_ENV = "KAMOE_DIRECT_GRADIENTS"  # "0": always autograd (to compare, or to rule this path out)
_HALF_LOG_2PI = 0.5 * math.log(2 * math.pi)  # as in training.objectives.mixture_nll (the equality is tested)
# how each router's full probabilities (RouterOutput.probs, what the likelihood scores) follow from the logits, where
# the likelihood's gradient is written out: "activation": the router's own sigmoid or softmax
_PROBS_IN_CLOSED_FORM = {
    "dense": "activation",
    "topk": "activation",
    "switch": "softmax",
    "expert_choice": "softmax",
    "sigmoid_bias": "sigmoid",
}


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
        if lib is not None and not native.supports(
            layer.base_weight, layer.base_weight, layer.spline_weight, layer.spline_order, layer.base_activation_name
        ):
            return f"KAN layer {ref.name} (spline order {layer.spline_order}, {layer.base_activation_name} base)"
    return None


class DirectGradients:
    """``step(x, y)`` computes the loss of a batch and writes every parameter's gradient into ``p.grad``
    (overwriting it); it returns the loss (0-d tensor), or None without touching anything when this batch must go
    through autograd (a KAN layer's grid is not uniform, e.g. after a grid update by least squares).

    The model's parameters are looked up once here (module attribute access is slow Python); training updates
    them in place, so they stay the same tensors."""

    def __init__(
        self,
        model,
        task: str,
        lib,
        aux_weights: dict[str, float] | None = None,
        likelihood: bool = False,
        log_sigma: torch.Tensor | None = None,
    ) -> None:
        """``aux_weights``: weights of the routers' auxiliary losses (``balance_loss``, ``z_loss``) added to the
        loss; a router other than dense, or an auxiliary loss, runs on a small autograd graph of its own (logits ->
        weights and losses), the rest of the model stays in closed form."""
        reason = unsupported_reason(model, task, lib)
        if reason is None and likelihood and task != "classification" and log_sigma is None:
            reason = "the likelihood objective needs its log sigma"
        if reason is not None:
            raise ValueError(f"direct gradients do not cover this model: {reason}")
        self.task, self.lib = task, lib
        # the mixture likelihood scores each expert's own prediction; with no gate, or one expert, the objective is
        # the task loss (Objective.task_part)
        self.likelihood = likelihood and model.gate is not None and model.experts.n_experts > 1
        self.log_sigma = log_sigma
        self.kan_layers = [ref.layer for ref in model.kan_layers()]
        self.scale = model.input_scale
        self.flatten = model.flatten_input
        self.need_input_grad = self.scale is not None
        self.head = (model.head.weight, model.head.bias)
        kind = model.config.expert
        self.experts = BankGradients(model.experts, kind, lib, self.need_input_grad)
        shared = getattr(model, "shared", None)  # always-on experts beside the routed ones (weight 1 each)
        self.shared = None if shared is None else BankGradients(shared, kind, lib, self.need_input_grad)
        gate = model.gate
        self.gate_family = None if gate is None else gate.family
        if gate is not None:
            self.gate_input = (model.gate_input.weight, model.gate_input.bias)
            self.router = model.router
            self.aux_weights = {k: float(v) for k, v in (aux_weights or {}).items() if v > 0}
            # noisy top-k (noise layer and Gaussian noise) and the routers without parameters in closed form
            # (noisy_topk_forward/backward, router_logit_grad); any other router as a small autograd graph
            self.noisy = self.router.name == "noisy_topk"
            self.router_graph = self.router.name not in CLOSED_FORM_ROUTERS and not self.noisy
            self.router_params = [p for p in self.router.parameters() if p.requires_grad]
            self.sigmoid = getattr(self.router, "activation", "") == "sigmoid"
            if gate.family == "linear":
                self.dense = (gate.dense.weight, gate.dense.bias)
            else:
                glu, skip, norm = gate.glu.proj, gate.skip, gate.norm
                self.tail = (glu.weight, glu.bias, skip.weight, skip.bias, norm.weight, norm.bias)
                self.norm_eps = norm.eps
                if gate.family == "grn":
                    self.dense1, self.dense2 = (
                        (gate.dense1.weight, gate.dense1.bias),
                        (gate.dense2.weight, gate.dense2.bias),
                    )
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
        hidden, experts_saved = self.experts.forward(xs, knots)  # (B, E, H)
        shared_sum = None
        if self.shared is not None:
            shared_hidden, shared_saved = self.shared.forward(xs, knots)  # (B, N, H)
            shared_sum = shared_hidden.sum(1)
        grad_xs_gate = None
        if self.gate_family is None:
            mixed = hidden.reshape(batch, -1)
            loss, grad_prediction = self._loss(torch.addmm(self.head[1], mixed, self.head[0].t()), y)
            grad_hidden = present(linear_backward(grad_prediction, mixed, *self.head), "dL/d(mixed)").unsqueeze(1)
        else:
            h = torch.addmm(self.gate_input[1], xs, self.gate_input[0].t()).relu_()
            logits, gate_saved = self._gate_logits(h, knots)
            part = self._likelihood_part if self.likelihood else self._mse_part
            loss, grad_hidden, grad_shared, grad_logits, weights = part(hidden, shared_sum, logits, y)
            if self.aux_weights:
                grad_logits = grad_logits + aux_loss_gradient(logits, weights, self.aux_weights)
            grad_h = self._gate_backward(grad_logits, h, gate_saved, knots)
            grad_h = torch.ops.aten.threshold_backward(grad_h, h, 0)
            grad_xs_gate = linear_backward(grad_h, xs, *self.gate_input, self.need_input_grad)
        grad_xs = self.experts.backward(grad_hidden, xs, experts_saved, knots)
        grad_xs_shared = None
        if self.shared is not None:  # the same gradient reaches every shared expert: each enters with weight 1
            grad_each = grad_shared.unsqueeze(1).expand(-1, shared_hidden.shape[1], -1).contiguous()
            grad_xs_shared = self.shared.backward(grad_each, xs, shared_saved, knots)
        if scale is not None:  # dL/dW of x~ = W * x: sum over rows (and window steps) of dL/dx~ * x
            grad_xs = present(grad_xs, "dL/dx~ of the experts")
            for other in (grad_xs_gate, grad_xs_shared):
                if other is not None:
                    grad_xs.add_(other)
            per_column = grad_xs.mul_(x.reshape(batch, -1))
            if per_column.shape[1] == scale.shape[0]:
                torch.sum(per_column, 0, out=grad_buffer(scale))
            else:
                grad_buffer(scale).copy_(per_column.sum(0).view(-1, scale.shape[0]).sum(0))
        return loss

    # ----- the two objectives: mixed prediction's task loss, or the mixture likelihood -----------------------------
    def _mse_part(self, hidden, shared_sum, logits, y):
        """The task loss of the mixed prediction: (loss, dL/dhidden (B, E, H), dL/d(shared sum) (B, H),
        dL/dlogits, routed weights)."""
        if self.router_graph:
            leaf, routed = self._route(logits)
            weights = routed.weights.detach()
        elif self.noisy:
            weights, noisy_saved = noisy_topk_forward(self.router, logits)
        elif self.router.name != "dense":
            weights = self.router(logits).weights
        else:
            weights = torch.sigmoid(logits) if self.sigmoid else torch.softmax(logits, -1)
        mixed = (hidden * weights.unsqueeze(2)).sum(1)  # faster than a bmm of (1, E) rows here
        if shared_sum is not None:
            mixed = mixed + shared_sum
        loss, grad_prediction = self._loss(torch.addmm(self.head[1], mixed, self.head[0].t()), y)
        grad_shared = present(linear_backward(grad_prediction, mixed, *self.head), "dL/d(mixed)")
        grad_mixed = grad_shared.unsqueeze(1)
        grad_weights = (hidden * grad_mixed).sum(2)
        grad_hidden = weights.unsqueeze(2) * grad_mixed
        if self.router_graph:
            grad_logits = self._route_backward(leaf, routed.weights, grad_weights)
        elif self.noisy:
            grad_logits = noisy_topk_backward(self.router, noisy_saved, weights, grad_weights)
        elif self.router.name != "dense":
            grad_logits = router_logit_grad(self.router, logits, weights, grad_weights)
        elif self.sigmoid:
            grad_logits = torch.ops.aten.sigmoid_backward(grad_weights, weights)
        else:
            grad_logits = torch._softmax_backward_data(grad_weights, weights, -1, weights.dtype)
        return loss, grad_hidden, grad_shared, grad_logits, weights

    def _likelihood_part(self, hidden, shared_sum, logits, y):
        """The mixture likelihood (:func:`kamoe_viz.training.objectives.mixture_nll`) of the experts' own
        predictions under the gate's full probabilities; the prediction itself is not in the loss. Each expert's
        output head(z_e [+ shared]) in closed form; the likelihood (E numbers a row) and the router as a small
        autograd graph, which also gives the gradients of log sigma and of the router's own parameters."""
        hidden_out = hidden if shared_sum is None else hidden + shared_sum.unsqueeze(1)
        weight, bias = self.head
        outputs = torch.matmul(hidden_out, weight.t()).add_(bias)  # (B, E, O)
        kind = _PROBS_IN_CLOSED_FORM.get(self.router.name)
        kind = getattr(self.router, "activation", "") if kind == "activation" else kind
        if kind in ("softmax", "sigmoid"):
            loss, grad_logits, grad_outputs = self._likelihood_closed_form(logits, outputs, y, kind)
            weights = self._weights(logits)
        else:
            loss, grad_logits, grad_outputs, weights = self._likelihood_graph(logits, outputs, y)
        flat = grad_outputs.reshape(-1, grad_outputs.shape[-1])
        torch.mm(flat.t(), hidden_out.reshape(-1, hidden_out.shape[-1]), out=grad_buffer(weight))
        torch.sum(flat, 0, out=grad_buffer(bias))
        grad_hidden = torch.matmul(grad_outputs, weight)  # (B, E, H)
        grad_shared = grad_hidden.sum(1) if shared_sum is not None else None
        return loss, grad_hidden, grad_shared, grad_logits, weights

    def _weights(self, logits: torch.Tensor) -> torch.Tensor:
        """The routed weights (what the balance and z losses read), without a graph."""
        if self.router.name == "dense":
            return torch.sigmoid(logits) if self.sigmoid else torch.softmax(logits, -1)
        return self.router(logits).weights

    def _likelihood_closed_form(self, logits, outputs, y, kind: str):
        """(loss, dL/dlogits, dL/doutputs) of the mixture likelihood when the gate's full probabilities are the
        softmax of the logits or the sigmoids divided by their sum; writes log sigma's gradient. With
        a = log p_e + log N(y; y_e, sigma^2) per row, r = softmax(a) (the responsibilities) and c = r / rows:
        dL/dy_e = -c_e (y - y_e) / sigma^2, dL/dlog sigma = -sum c_e sum_o (z^2 - 1), dL/dlog p_e = -c_e."""
        if kind == "softmax":
            log_share = torch.log_softmax(logits, -1)
            share = log_share.exp()
            routed = None
        else:
            affinity = torch.sigmoid(logits)
            total = affinity.sum(-1, keepdim=True)
            share = affinity / total.clamp_min(1e-12)
            log_share = torch.log(share)  # -inf where a sigmoid underflowed: that expert has no weight
            routed = (total > 0).to(logits.dtype)  # (B, 1); a row no expert took is not scored
        if self.task == "classification":
            log_q = torch.log_softmax(outputs, -1)  # (B, E, O)
            labels = y.long().view(-1, 1, 1).expand(-1, outputs.shape[1], 1)
            log_p = log_q.gather(-1, labels).squeeze(-1)
        else:
            log_sigma = self.log_sigma
            if log_sigma is None:
                raise ValueError("the likelihood objective for regression needs its log sigma")
            inv = torch.exp(-log_sigma)
            z = (y.unsqueeze(1) - outputs).mul_(inv)  # (B, E, O)
            log_p = (z.square().mul_(-0.5) - log_sigma - _HALF_LOG_2PI).sum(-1)
        a = log_share + log_p
        nll = -torch.logsumexp(a, -1)
        rows = torch.tensor(float(logits.shape[0])) if routed is None else routed.sum().clamp_min(1)
        c = torch.softmax(a, -1).div_(rows)  # (B, E)
        if routed is not None:
            nll, c = nll * routed.squeeze(-1), c * routed
        loss = nll.sum() / rows
        if self.task == "classification":
            grad_outputs = log_q.exp_().neg_()
            grad_outputs.scatter_add_(-1, labels, torch.ones_like(labels, dtype=outputs.dtype))
            grad_outputs.mul_(-c.unsqueeze(-1))
        else:
            grad_buffer(cast(torch.Tensor, self.log_sigma)).copy_(-(c * (z.square() - 1.0).sum(-1)).sum())
            grad_outputs = z.mul_(inv).mul_(-c.unsqueeze(-1))
        grad_log_share = share * c.sum(-1, keepdim=True) - c
        grad_logits = grad_log_share if kind == "softmax" else grad_log_share.mul_(1.0 - affinity)
        return loss, grad_logits, grad_outputs

    def _likelihood_graph(self, logits, outputs, y):
        """(loss, dL/dlogits, dL/doutputs, routed weights) through a small autograd graph from the logits and the
        experts' outputs (routers with noise or parameters, ReLU scores); writes log sigma's and the router's
        own parameter gradients."""
        from kamoe_viz.training.objectives import mixture_nll  # training imports this module

        own = [p for p in (*self.router_params, self.log_sigma) if p is not None]
        with torch.enable_grad():
            leaf_logits = logits.detach().requires_grad_()
            leaf_outputs = outputs.requires_grad_()
            routed = self.router(leaf_logits)
            probs = routed.weights if routed.probs is None else routed.probs
            loss = mixture_nll(self.task, probs, leaf_outputs.transpose(1, 2), y, self.log_sigma)
            grads = torch.autograd.grad(loss, [leaf_logits, leaf_outputs, *own], allow_unused=True)
        grad_logits, grad_outputs = (
            g if g is not None else torch.zeros_like(t) for g, t in zip(grads[:2], (logits, outputs))
        )
        for p, g in zip(own, grads[2:]):
            if g is None:
                grad_buffer(p).zero_()
            else:
                grad_buffer(p).copy_(g)
        return loss.detach(), grad_logits, grad_outputs.detach(), routed.weights.detach()

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
            raise ValueError(
                f"prediction of shape {tuple(prediction.shape)} and targets of shape {tuple(y.shape)} differ"
            )
        diff = (prediction - y).reshape(-1)
        loss = torch.dot(diff, diff).div_(diff.shape[0])
        return loss, diff.mul_(2.0 / diff.shape[0]).view_as(prediction)

    # ----- gates --------------------------------------------------------------------------------------------------
    def _gate_logits(self, h: torch.Tensor, knots):
        if self.gate_family == "linear":
            return torch.addmm(self.dense[1], h, self.dense[0].t()), None
        if self.gate_family == "grn":
            pre = torch.addmm(self.dense1[1], h, self.dense1[0].t())
            a = F.elu(pre)
            eta = torch.addmm(self.dense2[1], a, self.dense2[0].t())
        else:
            a, pre = kan_forward(self.lib, self.kan1, h, knots)  # pre: the first KAN layer's backward state
            eta, a = kan_forward(self.lib, self.kan2, a, knots)  # a: the second's (native kernel: its input)
        logits, tail = residual_tail(h, eta, *self.tail, self.norm_eps)
        return logits, (pre, a, eta, tail)

    def _gate_backward(self, grad_logits: torch.Tensor, h: torch.Tensor, saved, knots) -> torch.Tensor:
        if self.gate_family == "linear":
            return present(linear_backward(grad_logits, h, *self.dense), "dL/dh of the linear gate")
        pre, a, eta, tail = saved
        glu_w, _, skip_w, _, norm_w, norm_b = self.tail
        grad_h, grad_eta, _ = residual_tail_backward(
            grad_logits, h, eta, tail, glu_w, skip_w, norm_w, norm_b, tuple(grad_buffer(p) for p in self.tail)
        )
        if self.gate_family == "grn":
            grad_a = linear_backward(grad_eta, a, *self.dense2)
            grad_pre = torch.ops.aten.elu_backward(grad_a, 1.0, 1, 1.0, False, pre)
            return grad_h.add_(linear_backward(grad_pre, h, *self.dense1))
        grad_a = present(kan_backward(self.lib, self.kan2, a, grad_eta, knots), "dL/da of the GRKAN gate")
        return grad_h.add_(kan_backward(self.lib, self.kan1, pre, grad_a, knots))
