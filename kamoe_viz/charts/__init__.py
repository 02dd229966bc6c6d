"""Every chart of the app: Altair builders, pure functions, tidy DataFrame in, ``alt.Chart`` out.

One theme (:mod:`kamoe_viz.charts.theme`: colours, sizes, the expert colour scale, so expert k has one colour on
every page); the Train page's builders are in :mod:`kamoe_viz.charts.training`, the Compare page's in
:mod:`kamoe_viz.charts.compare`, the interpretation pages' re-exported here.
"""

from kamoe_viz.charts.attribution import (
    attribution_bars,
    row_attribution_chart,
    side_by_side_chart,
    spline_importance_bars,
)
from kamoe_viz.charts.experts import ablation_chart, contingency_chart, expert_error_chart, expert_vs_target_chart
from kamoe_viz.charts.export import FORMATS, chart_bytes, chart_spec
from kamoe_viz.charts.gates import (
    gates_over_time_chart,
    load_chart,
    partial_dependence_chart,
    region_weight_charts,
    region_winner_chart,
    weight_histogram_chart,
    weight_violin_chart,
)
from kamoe_viz.charts.splines import (
    coverage_chart,
    edge_detail_chart,
    edge_frame,
    edge_grid_chart,
    importance_bars,
    symbolic_fit_chart,
)

__all__ = [
    "FORMATS",
    "ablation_chart",
    "attribution_bars",
    "chart_bytes",
    "chart_spec",
    "contingency_chart",
    "coverage_chart",
    "edge_detail_chart",
    "edge_frame",
    "edge_grid_chart",
    "expert_error_chart",
    "expert_vs_target_chart",
    "gates_over_time_chart",
    "importance_bars",
    "load_chart",
    "partial_dependence_chart",
    "region_weight_charts",
    "region_winner_chart",
    "row_attribution_chart",
    "side_by_side_chart",
    "spline_importance_bars",
    "symbolic_fit_chart",
    "weight_histogram_chart",
    "weight_violin_chart",
]
