"""Layers and models: KANLinear, the gate families, the routers, expert banks and KAMoE."""

from kamoe_viz.nn.gates import GATES, GRKANGate, GRNGate, LinearGate, build_gate
from kamoe_viz.nn.kan import EdgeCurves, KANLinear
from kamoe_viz.nn.moe import KAMoE, KanLayerRef, MoEOutput, build_model
from kamoe_viz.nn.routers import ROUTERS, Router, RouterOutput, build_router

__all__ = [
    "GATES",
    "ROUTERS",
    "EdgeCurves",
    "GRKANGate",
    "GRNGate",
    "KAMoE",
    "KANLinear",
    "KanLayerRef",
    "LinearGate",
    "MoEOutput",
    "Router",
    "RouterOutput",
    "build_gate",
    "build_model",
    "build_router",
]
