"""Multi-seed comparisons of gates (and the plain baseline), paired statistics, and the paper's protocols.

``compare.run(config, gates, seeds)`` trains every variant with every seed on one fixed split and returns a
:class:`ComparisonResult`; ``compare.reproduce_california`` / ``reproduce_sequential`` run the paper's experiments.
"""

from kamoe_viz.compare.core import (
    Progress,
    normalise_gates,
    normalise_seeds,
    plan,
    run,
    variant_config,
)
from kamoe_viz.compare.reproduce import (
    REFERENCE_MEANS,
    Reproduction,
    california_config,
    reproduce_california,
    reproduce_sequential,
)
from kamoe_viz.compare.tables import ComparisonResult
from kamoe_viz.compare.worker import RunSpec, cpu_count, gate_entropy, regime_agreement

__all__ = [
    "REFERENCE_MEANS",
    "ComparisonResult",
    "Progress",
    "Reproduction",
    "RunSpec",
    "california_config",
    "cpu_count",
    "gate_entropy",
    "normalise_gates",
    "normalise_seeds",
    "plan",
    "regime_agreement",
    "reproduce_california",
    "reproduce_sequential",
    "run",
    "variant_config",
]
