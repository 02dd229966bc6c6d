"""KAMoE Explorer: train small mixtures of experts (linear, GRN, GRKAN gates) and make their gating visible."""

__version__ = "0.1.0"
