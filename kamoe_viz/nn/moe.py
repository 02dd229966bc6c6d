"""KAMoE: input scaling, gate, experts, weighted sum, shared head; and the plain single-expert baseline.

    x~ = W * x                                  (W learnable, initialised to ones)
    h  = ReLU(Dense(x~))                        (last time step for recurrent experts, unless return_sequences)
    w  = router(gate(h))                        (B, E) or (B, T, E); the gate gives logits, the router weights
    z_e = expert_e(x~)                          (B, H) each
    y  = head(sum_e w_e z_e + sum_s z_s)        (the reference: MoE layer then Dense(n_outputs); z_s: the shared
                                                 experts, always on, none by default)

Since the head is linear, y = P (sum_e w_e z_e) + b = sum_e w_e * P z_e + b with P the head's weight:
``expert_outputs`` holds each expert's prediction through the shared head, P z_e + b, and
prediction = sum_e w_e (expert_outputs_e - b) + b. With shared experts, expert_outputs_e = P (z_e + sum_s z_s) + b
(each routed expert's prediction together with the shared ones) and the identity holds when the weights sum to 1.
"""

from __future__ import annotations

from typing import NamedTuple, Protocol, cast

import torch
from torch import nn

from kamoe_viz.config import SEQUENTIAL_EXPERTS, ModelConfig
from kamoe_viz.errors import ValidationError
from kamoe_viz.nn.experts import KANExperts, build_experts
from kamoe_viz.nn.gates import Gate, GRKANGate, build_gate, gate_options, glorot_linear
from kamoe_viz.nn.kan import KANLinear, KanOptions
from kamoe_viz.nn.routers import Router, RouterOutput, balance_loss, build_router, router_options, z_loss


class MoEOutput(NamedTuple):
    prediction: torch.Tensor  # (B, O) or (B, T, O); logits for classification
    gate_weights: torch.Tensor  # (B, E) or (B, T, E)
    expert_outputs: torch.Tensor  # (B, O, E) or (B, T, O, E): each expert through the shared head
    expert_hidden: torch.Tensor  # (B, E, H) or (B, T, E, H): what the experts hand to the mixture
    aux: dict[str, torch.Tensor]  # balance_loss, z_loss (scalars, unweighted); dropped_fraction, coverage
    gate_probs: torch.Tensor | None = None  # (B, E) or (B, T, E): RouterOutput.probs, what the likelihood scores


class KanLayerRef(NamedTuple):
    name: str  # e.g. "gate.kan1", "experts.layer1 (all experts)"
    layer: KANLinear
    expert: int | None  # the expert a per-expert layer belongs to; None for gate layers and the fused first layer
    group_size: int  # for the fused first expert layer: outputs per expert (H); else the layer's out_features
    shared: bool = False  # a layer of the shared (always-on) experts; ``expert`` then counts those


class KAMoE(nn.Module):
    """Mixture of experts with a linear, GRN or GRKAN gate; ``kind='standard'`` is one expert and no gate."""

    def __init__(self, config: ModelConfig, n_features: int, n_outputs: int, seq_len: int | None = None) -> None:
        super().__init__()
        self.config = config
        self.n_features = n_features
        self.n_outputs = n_outputs
        self.seq_len = seq_len
        self.is_sequence = seq_len is not None
        self.is_standard = config.kind == "standard"
        self.n_experts = 1 if self.is_standard else config.n_experts
        recurrent = config.expert in SEQUENTIAL_EXPERTS
        if recurrent and not self.is_sequence:
            raise ValidationError(
                "model.expert",
                config.expert,
                "LSTM/GRU experts need a sequential dataset; choose mlp or kan for tabular data",
            )
        if config.return_sequences and not recurrent:
            raise ValidationError("model.return_sequences", True, "needs LSTM or GRU experts")
        # Non-recurrent experts on windows see the flattened window, as the reference does.
        self.flatten_input = self.is_sequence and not recurrent
        expert_in = n_features * seq_len if self.flatten_input and seq_len is not None else n_features
        kan_options: KanOptions = dict(
            grid_size=config.kan_grid,
            spline_order=config.kan_order,
            grid_range=config.kan_range,
            base_activation=config.kan_base,
        )
        self.input_scale = (
            nn.Parameter(torch.ones(n_features)) if (config.input_scaling and not self.is_standard) else None
        )
        self.experts = build_experts(
            config.expert,
            expert_in,
            self.n_experts,
            config.expert_hidden,
            return_sequences=config.return_sequences,
            **kan_options,
        )
        width = self.experts.out_features
        self.shared: nn.Module | None = None
        if config.shared_experts and not self.is_standard:
            self.shared = build_experts(
                config.expert,
                expert_in,
                config.shared_experts,
                config.expert_hidden,
                return_sequences=config.return_sequences,
                **kan_options,
            )
        self.gate_input: nn.Linear | None = None
        self.gate: Gate | None = None
        self.router: Router | None = None
        if not self.is_standard:
            u = config.gate_hidden or width
            self.gate_input = glorot_linear(expert_in, u)
            self.gate = build_gate(config.gate, u, self.n_experts, **gate_options(config))
            self.router = build_router(config.routing, self.n_experts, **router_options(config))
        self.head = glorot_linear(width, n_outputs)
        # Mix with the router's weights divided by their sum (so the prediction is the mean of the routed mixture
        # the likelihood objective trains; top-1: the chosen expert's own prediction). Set from the objective by
        # kamoe_viz.training.objectives.prepare_model, not a model setting; False mixes the raw weights (Switch).
        self.normalise_weights = False

    # ----- forward ------------------------------------------------------------------------------------------------
    def scaled_input(self, x: torch.Tensor) -> torch.Tensor:
        """x~ = W * x, flattened for non-recurrent experts on windows."""
        if self.input_scale is not None:
            x = x * self.input_scale
        if self.flatten_input:
            x = x.flatten(1)
        return x

    def gate_hidden(self, x_scaled: torch.Tensor) -> torch.Tensor:
        """h = ReLU(Dense(x~)); the last step for recurrent experts unless they return sequences."""
        if self.is_sequence and not self.flatten_input and not self.config.return_sequences:
            x_scaled = x_scaled[:, -1]
        if self.gate_input is None:
            raise RuntimeError("the standard model (kind='standard') has no gate")
        return torch.relu(self.gate_input(x_scaled))

    def route(self, x_scaled: torch.Tensor) -> RouterOutput:
        """The router's output (weights, logits, aux) for scaled inputs: gate then router."""
        if self.gate is None or self.router is None:
            raise RuntimeError("the standard model (kind='standard') has no gate or router")
        out = self.router(self.gate(self.gate_hidden(x_scaled)))
        if self.normalise_weights:
            out = out._replace(weights=out.weights / out.weights.sum(-1, keepdim=True).clamp_min(1e-12))
        return out

    def gate_weights(self, x: torch.Tensor) -> torch.Tensor:
        """Only the routing weights (B, E); cheaper than forward for plots and attribution."""
        if self.gate is None:
            return torch.ones(x.shape[0], 1, dtype=x.dtype, device=x.device)
        return self.route(self.scaled_input(x)).weights

    def forward(self, x: torch.Tensor) -> MoEOutput:
        x_scaled = self.scaled_input(x)
        hidden = self.experts(x_scaled)  # (B, E, H) or (B, T, E, H)
        aux: dict[str, torch.Tensor] = {}
        probs = None
        if self.gate is None:
            weights = hidden.new_ones(hidden.shape[:-1])
        else:
            routed = self.route(x_scaled)
            weights, probs = routed.weights, routed.probs
            aux = {"balance_loss": balance_loss(routed), "z_loss": z_loss(routed), **routed.aux}
        # The head is linear, so mixing the hidden outputs first and projecting once is the same as mixing the
        # projected expert outputs, with fewer ops to differentiate. expert_outputs are not needed for the loss.
        mixed = (weights.unsqueeze(-1) * hidden).sum(dim=-2)  # (..., H)
        if self.shared is not None:
            shared = self.shared(x_scaled).sum(dim=-2)  # (..., H): always on, weight 1
            mixed = mixed + shared
            hidden_out = hidden + shared.unsqueeze(-2)
        else:
            hidden_out = hidden
        prediction = self.head(mixed)
        expert_outputs = self.head(hidden_out).transpose(-1, -2)  # (..., O, E)
        return MoEOutput(prediction, weights, expert_outputs, hidden, aux, probs)

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward(x).prediction

    # ----- inspection ---------------------------------------------------------------------------------------------
    def kan_layers(self) -> list[KanLayerRef]:
        """Every KAN layer of the model: gate, routed experts, shared experts."""
        refs: list[KanLayerRef] = []
        if isinstance(self.gate, GRKANGate):
            refs.append(KanLayerRef("gate.kan1", self.gate.kan1, None, self.gate.kan1.out_features))
            refs.append(KanLayerRef("gate.kan2", self.gate.kan2, None, self.gate.kan2.out_features))
        banks = [(self.experts, False, self.experts.kan_layers() if isinstance(self.experts, KANExperts) else [])]
        if isinstance(self.shared, KANExperts):
            banks.append((self.shared, True, self.shared.kan_layers("shared", "shared")))
        for bank, shared, layers in banks:
            for name, layer, expert in layers:
                group = bank.hidden[0] if expert is None else layer.out_features
                refs.append(KanLayerRef(name, layer, expert, group, shared))
        return refs

    @torch.no_grad()
    def kan_layer_inputs(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """The input each KAN layer sees for x, by layer name (2-D: rows x in_features)."""
        inputs: dict[str, torch.Tensor] = {}
        x_scaled = self.scaled_input(x)
        if isinstance(self.gate, GRKANGate):
            h = self.gate_hidden(x_scaled)
            inputs["gate.kan1"] = h.reshape(-1, h.shape[-1])
            mid = self.gate.kan1(h)
            inputs["gate.kan2"] = mid.reshape(-1, mid.shape[-1])
        for bank, name, one in ((self.experts, "experts", "expert"), (self.shared, "shared", "shared")):
            if not isinstance(bank, KANExperts):
                continue
            inputs[f"{name}.layer1 (all {name})"] = x_scaled.reshape(-1, x_scaled.shape[-1])
            batch = x_scaled.shape[0]
            z = bank.first(x_scaled).view(batch, bank.n_experts, bank.hidden[0])
            for e, stack in enumerate(bank.deeper):
                ze = z[:, e]
                for depth, layer in enumerate(cast(nn.ModuleList, stack), start=2):
                    inputs[f"{one}{e}.layer{depth}"] = ze
                    ze = layer(ze)
        return inputs

    def parameter_count(self) -> int:
        return sum(p.numel() for p in self.parameters() if p.requires_grad)

    def gate_parameter_count(self) -> int:
        """Parameters of the gate and its router (not the gate's input layer, as in the paper's counts)."""
        if self.gate is None:
            return 0
        modules = [m for m in (self.gate, self.router) if m is not None]
        return sum(p.numel() for m in modules for p in m.parameters() if p.requires_grad)

    def routing_parameters(self) -> list[nn.Parameter]:
        """What ``train.gate_lr_scale`` scales: the gate, its input layer and the router."""
        modules = [m for m in (self.gate_input, self.gate, self.router) if m is not None]
        return [p for m in modules for p in m.parameters() if p.requires_grad]


class DatasetShape(Protocol):
    """What a model needs to know about its data (a :class:`kamoe_viz.data.Dataset` has it)."""

    @property
    def n_features(self) -> int: ...

    @property
    def n_outputs(self) -> int: ...

    @property
    def seq_len(self) -> int | None: ...


def build_model(config: ModelConfig, dataset: DatasetShape) -> KAMoE:
    """The model for a dataset (anything with n_features, n_outputs, seq_len: a data.Dataset). A model over the
    server's cost budget is refused before anything is allocated (:mod:`kamoe_viz.budget`)."""
    from kamoe_viz.budget import check_model

    config.validate()
    check_model(config, dataset.n_features, dataset.n_outputs, dataset.seq_len)
    return KAMoE(config, dataset.n_features, dataset.n_outputs, dataset.seq_len)
