"""Interpretation of a trained KAMoE: pure functions of (model, dataset, options) returning tidy DataFrames.

- :mod:`.splines`: every KAN edge φ_ij (curves, knots, grid range, data distribution, importance)
- :mod:`.grids`: how much data lies outside each KAN grid, and moving grids onto the data
- :mod:`.symbolic`: fit an edge with a·f(b·x + c) + d over a fixed function library
- :mod:`.gates`: weight distributions, load/utilisation, routing entropy, region maps, time, partial dependence
- :mod:`.experts`: winning experts vs true regimes (contingency, NMI/ARI), per-expert error, ablation
- :mod:`.attribution`: Captum Integrated Gradients and Feature Ablation for gate weights and the prediction
"""

from kamoe_viz.interpret import attribution, experts, gates, grids, splines, symbolic

__all__ = ["attribution", "experts", "gates", "grids", "splines", "symbolic"]
