# %% [markdown]
# # KAMoE Explorer quickstart
#
# Load a dataset, train a mixture of experts with a GRKAN gate, draw the gate's KAN splines and a map of which
# expert wins where, and compare gate families over a few seeds, all with the library's own chart builders
# (`kamoe_viz.charts`: tidy DataFrame in, Altair chart out). The same cells are `examples/quickstart.ipynb`.
#
# Run it as a script (`python examples/quickstart.py`: writes the charts as SVG into `quickstart_charts/`) or as a
# notebook (charts shown inline). `KAMOE_QUICKSTART_EPOCHS` sets the epochs (default 40; the test suite uses 3).

# %%
import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # idle torch threads sleep: set before torch loads
from pathlib import Path

import kamoe_viz.charts as ch
from kamoe_viz import compare
from kamoe_viz.charts import compare as cc
from kamoe_viz.charts import training as ct
from kamoe_viz.config import DataConfig, ModelConfig, RunConfig, TrainConfig
from kamoe_viz.data import load_dataset
from kamoe_viz.interpret import gates, grids, splines
from kamoe_viz.routing_metrics import routing_summary
from kamoe_viz.training import train_run

EPOCHS = int(os.environ.get("KAMOE_QUICKSTART_EPOCHS", "40"))
OUT = Path(os.environ.get("KAMOE_QUICKSTART_OUT", "quickstart_charts"))
charts = {}  # name -> Altair chart; shown in a notebook, saved as SVG by a script

# %% [markdown]
# ## 1. Load a dataset
# `regimes` is synthetic: each sector of the (x0, x1) plane has its own target function, and the true regime of
# every row is known, so we can check whether the experts split the plane the same way.

# %%
data_config = DataConfig(name="regimes", options={"n_samples": 800})
dataset = load_dataset(data_config)
print(dataset.name, dataset.task, dataset.sizes(), dataset.feature_names)

# %% [markdown]
# ## 2. Train a mixture of experts with a GRKAN gate

# %%
config = RunConfig(
    data=data_config,
    model=ModelConfig(gate="grkan", expert="mlp", n_experts=3, expert_hidden=(16,)),
    train=TrainConfig(epochs=EPOCHS, batch_size=64, lr=0.01, seed=0, device="cpu"),
)
run = train_run(config, dataset=dataset)
result = run.result
print(f"test R² {result.metrics['r2']:.3f} after {result.epochs_run} epochs ({result.stopped_reason})")
charts["loss"] = ct.loss_chart(ct.history_frame(result.history), best_epoch=result.best_epoch)
charts["loss"]

# %% [markdown]
# ## 3. The gate's splines
# Every edge φᵢⱼ(x) of the gate's first KAN layer over the data's range, ranked by importance (mean |φᵢⱼ(x)| over
# the training data), with the knots and the data under each curve.

# %%
model = run.model
inputs = splines.layer_inputs(model, dataset)
layer = splines.kan_layer_names(model)[0]
importance = splines.edge_importance(model, dataset, inputs)
layer_importance = importance[importance["layer"] == layer]
top = layer_importance.nsmallest(8, "rank")
edges = list(zip(top["input"].astype(int), top["output"].astype(int)))
coverage = grids.grid_coverage_table(model, dataset, inputs)
frame = ch.edge_frame(
    splines.edge_curves(model, dataset, layer, edges, inputs),
    layer_importance,
    splines.knot_table(model, layer),
    coverage[coverage["layer"] == layer],
    splines.input_histograms(model, dataset, layer, inputs=inputs),
    parts=("total", "base", "spline"),
)
charts["splines"] = ch.edge_grid_chart(frame, columns=4)
charts["splines"]

# %% [markdown]
# ## 4. Gate maps: which expert wins where
# The (x0, x1) plane coloured by the expert with the largest gate weight, with training points on top; the experts'
# load, and how well the winning expert matches the true regime (NMI: 0 unrelated, 1 the same partition).

# %%
grid = gates.region_map(model, dataset, resolution=40)
points = gates.region_points(model, dataset, max_rows=300)
charts["winner_map"] = ch.region_winner_chart(grid, points, "x0", "x1")
wide = gates.gate_weights_frame(model, dataset, split="test")
weights = wide[[c for c in wide.columns if c.startswith("expert ")]].to_numpy()
routing = routing_summary(weights, wide["regime"])
print(f"load per expert {[round(v, 2) for v in routing['load']]}, NMI vs true regimes {routing['nmi']:.2f}")
charts["load"] = ch.load_chart(gates.load_table(weights, gates.gate_summary(model, dataset)["activation"]))
charts["winner_map"]

# %% [markdown]
# ## 5. A small comparison: linear vs GRN vs GRKAN gates over seeds
# Same data, split and experts; only the gate (and the training seed) changes. Paired statistics by seed.

# %%
comparison = compare.run(config, gates=("linear", "grn", "grkan"), seeds=2, include_standard=True, jobs=1)
print(comparison.verdict)
charts["compare_metric"] = cc.metric_chart(comparison.table, comparison.summary, comparison.metric_label)
charts["compare_curves"] = cc.loss_curves_chart(comparison.histories)
charts["compare_metric"]

# %%
charts["compare_curves"]

# %% [markdown]
# ## 6. Save every chart
# `kamoe_viz.charts.chart_bytes` renders offline (vl-convert), as PNG or SVG.

# %%
OUT.mkdir(parents=True, exist_ok=True)
for name, chart in charts.items():
    (OUT / f"{name}.svg").write_bytes(ch.chart_bytes(chart, "svg"))
print(f"wrote {len(charts)} charts to {OUT}/")
