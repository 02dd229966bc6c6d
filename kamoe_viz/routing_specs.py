"""The routers' definitions (name, title, paper, one-line definition, the config fields each reads), without torch,
so the config, the CLI's help and the pages read one list; the modules are in :mod:`kamoe_viz.nn.routers`."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class RouterSpec:
    name: str
    title: str
    paper: str
    definition: str
    options: tuple[str, ...]  # the ModelConfig fields the router reads
    batch_dependent: bool = False  # a row's weights at inference depend on the other rows of its batch


ROUTERS: dict[str, RouterSpec] = {
    spec.name: spec
    for spec in (
        RouterSpec(
            "dense",
            "Dense",
            "Genet & Inzirillo 2024 (KAMoE, arXiv 2409.15161; the reference)",
            "Every expert gets sigmoid(logit) (need not sum to 1) or softmax(logits) (sums to 1).",
            ("gate_activation",),
        ),
        RouterSpec(
            "topk",
            "Top-k",
            "Shazeer et al. 2017; GShard (Lepikhin et al. 2020) top-2",
            "Only the k largest logits are kept: softmax over them, renormalised (for k = 1 the plain softmax "
            "probability, Switch-style, so the gate still gets a gradient); with sigmoid, sigmoid(logit).",
            ("top_k", "gate_activation"),
        ),
        RouterSpec(
            "noisy_topk",
            "Noisy top-k",
            "Shazeer et al. 2017",
            "Top-k of logits + N(0, 1) * softplus(learned noise scale), noise in training only; weights as top-k "
            "with softmax.",
            ("top_k",),
        ),
        RouterSpec(
            "switch",
            "Switch (top-1, capacity)",
            "Fedus et al. 2021",
            "Each row goes to its most probable expert with weight softmax(logits)[e]; in training an expert "
            "takes at most ceil(capacity_factor * rows / E) rows of a batch, the rest are dropped (weight 0).",
            ("capacity_factor",),
        ),
        RouterSpec(
            "expert_choice",
            "Expert choice",
            "Zhou et al. 2022",
            "Each expert takes the C rows of the batch with the highest softmax score, C = ceil(capacity_factor "
            "* rows / E); a row can get 0, 1 or several experts. Depends on the batch, also at inference.",
            ("capacity_factor",),
            batch_dependent=True,
        ),
        RouterSpec(
            "sigmoid_bias",
            "Sigmoid + bias balancing",
            "DeepSeek-V3 (arXiv 2412.19437; Wang et al. 2024, arXiv 2408.15664)",
            "Sigmoid affinities; the top-k of affinity + bias are selected and weighted by their affinities "
            "normalised over the selected (k = 1: the affinity itself); after each step b_i += u * sign(mean "
            "load - load_i). No auxiliary loss needed.",
            ("top_k", "bias_update_rate"),
        ),
        RouterSpec(
            "relu",
            "ReLU",
            "ReMoE (Wang et al. 2024, arXiv 2412.14711)",
            "Weights ReLU(logits): an expert is on where its logit is positive, so a row can use 0 to E experts.",
            (),
        ),
    )
}

SHARED_EXPERTS_DEFINITION = (
    "Shared experts (DeepSeekMoE, arXiv 2401.06066): N always-on experts whose outputs are "
    "added to the routed mixture with weight 1."
)

OBJECTIVE_DEFINITIONS = {
    "mse": "The task loss of the mixed prediction (MSE, or cross-entropy for classes): experts are blended, and "
    "nothing rewards sending a row to the one expert that predicts it best.",
    "likelihood": "The mixture likelihood (Jacobs et al. 1991): -log sum_e p_e N(y; y_e, sigma^2) with a learned "
    "sigma (classes: -log sum_e p_e p_e(y)); each row pulls the gate towards its best expert, which "
    "is what makes experts specialise. p: the gate's probabilities over all experts (before top-k); "
    "the prediction mixes the routed weights normalised to sum 1 (top-1: the chosen expert's output).",
}
RESTARTS_DEFINITION = (
    "Restarts: try this many initialisations for the given epochs each and train the one with "
    "the lowest validation loss (1 = off). Catches some runs whose experts settle on a misplaced "
    "regime boundary; costs restarts × epochs extra."
)
