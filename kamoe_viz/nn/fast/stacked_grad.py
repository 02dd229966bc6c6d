"""Loss and gradients of S stacked parameter sets in closed form, without autograd (CPU or GPU, float32).

Why: the single-run trainer computes a small model's gradients in closed form (:mod:`kamoe_viz.nn.fast.direct_grad`),
several times faster than eager autograd, whose per-op cost dominates a 1.5k-parameter model. Batched training
through autograd (``stacked_forward`` + ``torch.autograd.grad``) paid that cost once for S seeds but still ran
~2-3x as many ops as a closed-form step, and measured only 1.3x the runs per minute of training the seeds one by
one. Here every layer is one batched matmul over seeds forward and two backward, written straight into a flat
gradient buffer laid out like the stacked weights (``grads[name]`` is a contiguous (S, ...) view), so a step of S
seeds costs about the ops of one closed-form step.

Covered (:func:`unsupported_reason` names the rest, which keeps the autograd path): MLP experts of any depth, KAN
experts of one layer, the plain single-expert model, the linear, GRN and GRKAN gates, the dense and top-k routers
(sigmoid or softmax), input scaling, flattened windows, MSE and cross-entropy. KAN layers run per seed on the
native kernel when the run has it, else on the PyTorch path's functions (both write the weight gradients into the
buffer's views). The values equal autograd's to rounding (tests/test_batched.py compares each seed with training
it alone).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F

from kamoe_viz.nn.fast import native
from kamoe_viz.nn.fast.closed_form import present, router_logit_grad
from kamoe_viz.nn.spline_ops import uniform_kan_backward, uniform_kan_forward

if TYPE_CHECKING:
    from kamoe_viz.nn.moe import KAMoE

Params = dict[str, torch.Tensor]


def unsupported_reason(model: KAMoE, task: str) -> str | None:
    """Why :class:`StackedGradients` does not cover this model (autograd then trains the stack), or None."""
    cfg = model.config
    experts: Any = model.experts
    if task not in ("regression", "classification"):
        return f"task {task!r}"
    if cfg.expert == "kan" and len(experts.deeper):
        return "KAN experts deeper than one layer"
    if model.gate is not None and (model.router is None or model.router.name not in ("dense", "topk")):
        return f"routing {cfg.routing!r}"
    for ref in model.kan_layers():
        layer = ref.layer
        if layer.bias is not None or layer._uniform_knots() is None:
            return f"KAN layer {ref.name} (a bias or a non-uniform grid)"
    return None


def _t(w: torch.Tensor) -> torch.Tensor:
    return w.transpose(1, 2)


def _linear(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """(S, B, in) x (S, out, in) + (S, out) -> (S, B, out)."""
    return torch.baddbmm(b.unsqueeze(1), x, _t(w))


def _linear_weights(grad_out: torch.Tensor, x: torch.Tensor, gw: torch.Tensor, gb: torch.Tensor | None) -> None:
    """Writes dL/dW (S, out, in) and dL/db (S, out) of :func:`_linear` into ``gw``/``gb``. With fewer inputs than
    outputs the product runs transposed (as direct_grad.linear_grads: MKL is several times slower at a product
    whose result has a narrow last dimension)."""
    if gw.shape[2] < gw.shape[1]:
        gw.copy_(_t(torch.bmm(_t(x), grad_out)))
    else:
        torch.bmm(_t(grad_out), x, out=gw)
    if gb is not None:
        torch.sum(grad_out, 1, out=gb)


def _linear_backward(
    grad_out: torch.Tensor, x: torch.Tensor, w: torch.Tensor, gw: torch.Tensor, gb: torch.Tensor | None
) -> torch.Tensor:
    """:func:`_linear_weights`, and returns dL/dx."""
    _linear_weights(grad_out, x, gw, gb)
    return _input_grad(grad_out, w)


def _input_grad(grad_out: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """dL/dx = dL/dy W of :func:`_linear` (the transposed product measured slower here, unlike the weights')."""
    return torch.bmm(grad_out, w)


class StackedGradients:
    """``step(p, g, x, y)``: per-seed losses (S,) of a batch x (S, B, ...) / y (S, B, ...) under the stacked
    parameters ``p`` (name -> (S, *shape)), with every parameter's gradient written into ``g`` (same names; each
    a contiguous view, overwritten)."""

    def __init__(self, model: KAMoE, task: str, lib: Any) -> None:
        reason = unsupported_reason(model, task)
        if reason is not None:
            raise ValueError(f"stacked closed-form gradients do not cover this model: {reason}")
        cfg = model.config
        experts: Any = model.experts
        gate: Any = model.gate
        self.router: Any = model.router
        self.task, self.lib = task, lib
        self.scale = model.input_scale is not None
        self.flatten = model.flatten_input
        self.expert = cfg.expert
        self.E, self.H = int(experts.n_experts), int(experts.hidden[0])
        self.depth = len(experts.hidden) - 1 if cfg.expert == "mlp" else 0
        self.gate = None if gate is None else cfg.gate
        self.sigmoid = getattr(self.router, "activation", "") == "sigmoid"
        layers: dict[str, Any] = {}
        if self.gate == "grkan":
            layers.update({"gate.kan1": gate.kan1, "gate.kan2": gate.kan2})
        if self.expert == "kan":
            layers["experts.first"] = experts.first
        # parameter prefix -> (layer, shift, inv_step, on the native kernel?)
        self.kan: dict[str, tuple[Any, torch.Tensor, torch.Tensor, bool]] = {}
        for name, layer in layers.items():
            shift, inv_step = layer._uniform_knots()[:2]
            use_lib = lib is not None and native.supports(
                layer.base_weight,
                layer.base_weight,
                layer.spline_weight,
                layer.spline_order,
                layer.base_activation_name,
            )
            self.kan[name] = (layer, shift, inv_step, use_lib)
        if self.gate in ("grn", "grkan"):
            self.eps = float(gate.norm.eps)
        self.names = self._covered(model)

    def _covered(self, model: KAMoE) -> set[str]:
        """The parameter names whose gradients :meth:`step` writes (batched training checks they are all)."""
        names = {"head.weight", "head.bias"} | ({"input_scale"} if self.scale else set())
        if self.expert == "kan":
            names |= {"experts.first.base_weight", "experts.first.spline_weight"}
        else:
            names |= {"experts.first.weight", "experts.first.bias"}
            names |= {f"experts.{k}.{i}" for k in ("weights", "biases") for i in range(self.depth)}
        layers = {"linear": ("dense",), "grn": ("dense1", "dense2"), "grkan": ()}.get(self.gate or "", ())
        if self.gate is not None:
            names |= {"gate_input.weight", "gate_input.bias"}
            names |= {f"gate.{layer}.{k}" for layer in layers for k in ("weight", "bias")}
        if self.gate in ("grn", "grkan"):
            names |= {f"gate.{layer}.{k}" for layer in ("skip", "glu.proj", "norm") for k in ("weight", "bias")}
        if self.gate == "grkan":
            names |= {f"gate.kan{i}.{k}" for i in (1, 2) for k in ("base_weight", "spline_weight")}
        return names

    # ----- KAN layers, one seed at a time (the kernel's pass per seed is the work itself) --------------------------
    def _kan(self, name: str, p: Params, x: torch.Tensor, need_input: bool = True):
        layer, shift, inv_step, use_lib = self.kan[name]
        bw, sw = p[name + ".base_weight"], p[name + ".spline_weight"]
        order, base = layer.spline_order, layer.base_activation_name
        if use_lib:
            x = x.contiguous()
            out = torch.stack(
                [
                    native.kan_forward(self.lib, x[s], bw[s], sw[s], None, shift, inv_step, order, base)
                    for s in range(x.shape[0])
                ]
            )
            return out, x
        outs, states = [], []
        for s in range(x.shape[0]):
            o, st = uniform_kan_forward(x[s], bw[s], sw[s], None, shift, inv_step, order, base, need_input)
            outs.append(o)
            states.append(st)
        return torch.stack(outs), states

    def _kan_backward(
        self, name: str, p: Params, g: Params, state, grad_out: torch.Tensor, need_input: bool = True
    ) -> torch.Tensor | None:
        layer, shift, inv_step, use_lib = self.kan[name]
        bw, sw = p[name + ".base_weight"], p[name + ".spline_weight"]
        gbw, gsw = g[name + ".base_weight"], g[name + ".spline_weight"]
        grad_out = grad_out.contiguous()
        grads = []
        for s in range(grad_out.shape[0]):
            if use_lib:
                gx, _, _ = native.kan_backward(
                    self.lib,
                    state[s],
                    bw[s],
                    sw[s],
                    shift,
                    inv_step,
                    layer.spline_order,
                    layer.base_activation_name,
                    grad_out[s],
                    need_input,
                    True,
                    weight_grads=(gbw[s], gsw[s]),
                )
            else:
                gx, gb_, gs_, _ = uniform_kan_backward(state[s], grad_out[s], need_input)
                gbw[s].copy_(gb_)
                gsw[s].copy_(gs_)
            grads.append(gx)
        return torch.stack(grads) if need_input else None

    # ----- the step -----------------------------------------------------------------------------------------------
    @torch.no_grad()
    def step(self, p: Params, g: Params, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        S, B = x.shape[:2]
        xs = x * p["input_scale"].view(S, *([1] * (x.dim() - 2)), -1) if self.scale else x
        if self.flatten:
            xs = xs.flatten(2)
        xs = xs.contiguous()
        need_x = self.scale
        hidden, saved = self._experts(p, xs)  # (S, B, E, H)
        if self.gate is not None:
            h = _linear(xs, p["gate_input.weight"], p["gate_input.bias"]).relu_()
            logits, gate_saved = self._gate(p, h)
            if self.router.name != "dense":
                weights = self.router(logits).weights
            else:
                weights = torch.sigmoid(logits) if self.sigmoid else torch.softmax(logits, -1)
            # the head is linear: sum_e w_e (P z_e) + b = P (sum_e w_e z_e) + b. Projecting every expert is one
            # well-shaped bmm (S, B*E, H) x (S, H, O), and the mixing then runs on (S, B, E, O), small since O is 1
            # or the class count (mixing the (S, B, E, H) hidden outputs first costs three large products)
            E, H = hidden.shape[2:]
            hidden = hidden.reshape(S, B * E, H)  # contiguous (deeper MLP experts give a permuted view)
            projected = torch.bmm(hidden, _t(p["head.weight"])).view(S, B, E, -1)
            prediction = (projected * weights.unsqueeze(-1)).sum(2).add_(p["head.bias"].unsqueeze(1))
        else:
            mixed = hidden.reshape(S, B, -1)
            prediction = _linear(mixed, p["head.weight"], p["head.bias"])
        losses, grad_pred = self._loss(prediction, y)

        grad_xs_gate = None
        if self.gate is not None:
            torch.sum(grad_pred, 1, out=g["head.bias"])
            grad_pred = grad_pred.unsqueeze(2)  # (S, B, 1, O)
            grad_weights = (projected * grad_pred).sum(-1)
            grad_projected = (weights.unsqueeze(-1) * grad_pred).view(S, B * E, -1)
            torch.bmm(_t(grad_projected), hidden, out=g["head.weight"])
            head_w = p["head.weight"]
            if head_w.shape[1] == 1:  # an outer product: a broadcast multiply beats a bmm with K = 1
                grad_hidden = (grad_projected * head_w).view(S, B, E, H)
            else:
                grad_hidden = torch.bmm(grad_projected, head_w).view(S, B, E, H)
            if self.router.name != "dense":
                grad_logits = router_logit_grad(self.router, logits, weights, grad_weights)
            elif self.sigmoid:
                grad_logits = torch.ops.aten.sigmoid_backward(grad_weights, weights)
            else:
                grad_logits = torch._softmax_backward_data(grad_weights, weights, -1, weights.dtype)
            grad_h = self._gate_backward(p, g, grad_logits, h, gate_saved)
            grad_h = torch.ops.aten.threshold_backward(grad_h, h, 0)
            _linear_weights(grad_h, xs, g["gate_input.weight"], g["gate_input.bias"])
            grad_xs_gate = _input_grad(grad_h, p["gate_input.weight"]) if need_x else None
        else:
            grad_mixed = _linear_backward(grad_pred, mixed, p["head.weight"], g["head.weight"], g["head.bias"])
            grad_hidden = grad_mixed.view(S, B, 1, -1)
        grad_xs = self._experts_backward(p, g, grad_hidden, xs, saved, need_x)
        if self.scale:
            grad_xs = present(grad_xs, "dL/dx~ of the experts")
            if grad_xs_gate is not None:
                grad_xs.add_(grad_xs_gate)
            per_column = grad_xs.mul_(x.reshape(S, B, -1)).sum(1)  # (S, F or T*F)
            scale_grad = g["input_scale"]
            scale_grad.copy_(per_column.view(S, -1, scale_grad.shape[1]).sum(1))
        return losses

    def _loss(self, prediction: torch.Tensor, y: torch.Tensor):
        """Per-seed task loss (S,) and dL_s/dprediction (each seed's loss differentiated on its own)."""
        S = prediction.shape[0]
        if self.task == "classification":
            logits, labels = prediction.reshape(-1, prediction.shape[-1]), y.reshape(-1)
            per_row = F.cross_entropy(logits, labels, reduction="none").view(S, -1)
            grad = torch.softmax(logits, -1)
            grad.scatter_add_(1, labels.unsqueeze(1), grad.new_full((labels.shape[0], 1), -1.0))
            return per_row.mean(1), grad.div_(per_row.shape[1]).view_as(prediction)
        if prediction.shape != y.shape:
            raise ValueError(
                f"prediction of shape {tuple(prediction.shape)} and targets of shape {tuple(y.shape)} differ"
            )
        diff = (prediction - y).reshape(S, -1)
        n = diff.shape[1]
        losses = torch.linalg.vecdot(diff, diff).div_(n)
        return losses, diff.mul_(2.0 / n).view_as(prediction)

    def _experts(self, p: Params, xs: torch.Tensor):
        S, B = xs.shape[:2]
        if self.expert == "kan":
            first, state = self._kan("experts.first", p, xs, self.scale)
            return first.view(S, B, self.E, self.H), (first, state)
        first = _linear(xs, p["experts.first.weight"], p["experts.first.bias"]).relu_()
        if not self.depth:
            return first.view(S, B, self.E, self.H), (first, [])
        z = first.view(S, B, self.E, self.H).permute(0, 2, 1, 3).reshape(S * self.E, B, self.H)
        layers = [z]
        for i in range(self.depth):
            w, b = p[f"experts.weights.{i}"], p[f"experts.biases.{i}"]  # (S, E, in, out), (S, E, 1, out)
            layers.append(
                torch.baddbmm(b.reshape(S * self.E, 1, -1), layers[-1], w.reshape(S * self.E, *w.shape[2:])).relu_()
            )
        out = layers[-1].view(S, self.E, B, -1).permute(0, 2, 1, 3)
        return out, (first, layers)

    def _experts_backward(
        self, p: Params, g: Params, grad_hidden: torch.Tensor, xs: torch.Tensor, saved, need_x: bool
    ) -> torch.Tensor | None:
        S, B = xs.shape[:2]
        first, state = saved
        if self.expert == "kan":
            return self._kan_backward("experts.first", p, g, state, grad_hidden.reshape(S, B, -1), need_x)
        grad = grad_hidden
        if self.depth:
            layers = state
            grad = grad.permute(0, 2, 1, 3).reshape(S * self.E, B, -1)
            for i in range(self.depth - 1, -1, -1):
                w = p[f"experts.weights.{i}"]
                gw, gb = g[f"experts.weights.{i}"], g[f"experts.biases.{i}"]
                grad = torch.ops.aten.threshold_backward(grad, layers[i + 1], 0)
                torch.bmm(_t(layers[i]), grad, out=gw.view(S * self.E, *gw.shape[2:]))
                torch.sum(grad, 1, keepdim=True, out=gb.view(S * self.E, 1, -1))
                grad = torch.bmm(grad, _t(w.reshape(S * self.E, *w.shape[2:])))
            grad = grad.view(S, self.E, B, -1).permute(0, 2, 1, 3)
        grad = torch.ops.aten.threshold_backward(grad.reshape(S, B, -1), first, 0)
        _linear_weights(grad, xs, g["experts.first.weight"], g["experts.first.bias"])
        return _input_grad(grad, p["experts.first.weight"]) if need_x else None

    def _gate(self, p: Params, h: torch.Tensor):
        if self.gate == "linear":
            return _linear(h, p["gate.dense.weight"], p["gate.dense.bias"]), None
        if self.gate == "grn":
            pre = _linear(h, p["gate.dense1.weight"], p["gate.dense1.bias"])
            a = F.elu(pre)
            eta = _linear(a, p["gate.dense2.weight"], p["gate.dense2.bias"])
            first = pre
        else:
            a, first = self._kan("gate.kan1", p, h)
            eta, a = self._kan("gate.kan2", p, a)  # a: the second layer's backward state
        projected = _linear(eta, p["gate.glu.proj.weight"], p["gate.glu.proj.bias"])
        z = _linear(h, p["gate.skip.weight"], p["gate.skip.bias"]).add_(F.glu(projected, dim=-1))
        normed, mean, rstd = torch.native_layer_norm(z, [z.shape[-1]], None, None, self.eps)
        logits = torch.addcmul(p["gate.norm.bias"].unsqueeze(1), normed, p["gate.norm.weight"].unsqueeze(1))
        return logits, (first, a, eta, projected, z, normed, mean, rstd)

    def _gate_backward(self, p: Params, g: Params, grad_logits: torch.Tensor, h: torch.Tensor, saved) -> torch.Tensor:
        if self.gate == "linear":
            return _linear_backward(
                grad_logits, h, p["gate.dense.weight"], g["gate.dense.weight"], g["gate.dense.bias"]
            )
        first, a, eta, projected, z, normed, mean, rstd = saved
        torch.sum(grad_logits * normed, 1, out=g["gate.norm.weight"])
        torch.sum(grad_logits, 1, out=g["gate.norm.bias"])
        grad_normed = (grad_logits * p["gate.norm.weight"].unsqueeze(1)).contiguous()
        grad_z = torch.ops.aten.native_layer_norm_backward(
            grad_normed, z, [z.shape[-1]], mean, rstd, None, None, [True, False, False]
        )[0]
        grad_h = _linear_backward(grad_z, h, p["gate.skip.weight"], g["gate.skip.weight"], g["gate.skip.bias"])
        grad_projected = torch.ops.aten.glu_backward(grad_z, projected, -1)
        grad_eta = _linear_backward(
            grad_projected, eta, p["gate.glu.proj.weight"], g["gate.glu.proj.weight"], g["gate.glu.proj.bias"]
        )
        if self.gate == "grn":
            grad_a = _linear_backward(
                grad_eta, a, p["gate.dense2.weight"], g["gate.dense2.weight"], g["gate.dense2.bias"]
            )
            grad_pre = torch.ops.aten.elu_backward(grad_a, 1.0, 1, 1.0, False, first)
            return grad_h.add_(
                _linear_backward(grad_pre, h, p["gate.dense1.weight"], g["gate.dense1.weight"], g["gate.dense1.bias"])
            )
        grad_a_kan = self._kan_backward("gate.kan2", p, g, a, grad_eta)
        grad_h_kan = self._kan_backward("gate.kan1", p, g, first, present(grad_a_kan, "dL/da of the GRKAN gate"))
        return grad_h.add_(present(grad_h_kan, "dL/dh of the GRKAN gate"))


__all__ = ["StackedGradients", "unsupported_reason"]
