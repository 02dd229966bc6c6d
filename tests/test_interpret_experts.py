"""Expert specialisation from the real gate weights: winners, contingency, agreement, errors, ablation."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from interpret_helpers import tiny_model
from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

from kamoe_viz.errors import ValidationError
from kamoe_viz.interpret import experts as ex
from kamoe_viz.interpret._common import regression_metrics


@pytest.fixture(
    scope="module",
    params=[
        ("grkan", "mlp", "sigmoid", "regression"),
        ("grkan", "kan", "softmax", "classification"),
        ("linear", "mlp", "softmax", "regression"),
    ],
    ids=lambda c: "-".join(c),
)
def trained(request):
    model, data = tiny_model(*request.param)
    return model, data, ex.routing_table(model, data, "test")


def test_winner_is_the_largest_real_gate_weight(trained):
    model, data, table = trained
    with torch.no_grad():
        weights = model.gate_weights(torch.as_tensor(data.X_test)).numpy()
    assert (table["winner"].to_numpy() == weights.argmax(1)).all()
    assert np.allclose(table[[f"expert {k} weight" for k in range(3)]].to_numpy(), weights, atol=1e-6)


def test_contingency_counts_regime_against_winner(trained):
    model, data, table = trained
    cont = ex.contingency(table)
    assert cont["count"].sum() == len(data.X_test)
    with torch.no_grad():
        winners = model.gate_weights(torch.as_tensor(data.X_test)).numpy().argmax(1)
    truth = data.regimes_test
    for row in cont.itertuples():
        assert row.count == int(np.sum((truth == row.truth) & (winners == row.winner)))
    assert cont.groupby("truth")["share_of_truth"].sum().apply(lambda s: s == pytest.approx(1.0)).all()
    assert set(cont["truth_name"]) <= {"left", "middle", "right"}


def test_agreement_uses_sklearn_scores(trained):
    _, data, table = trained
    score = ex.agreement(table)
    assert score["nmi"] == pytest.approx(normalized_mutual_info_score(data.regimes_test, table["winner"]))
    assert score["ari"] == pytest.approx(adjusted_rand_score(data.regimes_test, table["winner"]))
    assert 0 <= score["matched_accuracy"] <= 1 and score["rows"] == len(data.X_test)


def test_agreement_of_a_relabelled_partition_is_perfect():
    truth = np.repeat([0, 1, 2], 10)
    table = pd.DataFrame({"truth": truth, "winner": (truth + 1) % 3})
    score = ex.agreement(table)
    assert score["nmi"] == pytest.approx(1.0) and score["ari"] == pytest.approx(1.0)
    assert score["matched_accuracy"] == pytest.approx(1.0)
    assert np.isnan(ex.agreement(table.assign(truth=-1))["nmi"])


def test_expert_errors_on_won_and_all_rows(trained):
    _, data, table = trained
    errors = ex.expert_errors(data, table)
    assert errors["rows_won"].sum() == len(table)
    if data.task == "regression":
        k = int(errors["rows_won"].idxmax())
        won = table[table["winner"] == k]
        rmse = np.sqrt(np.mean((won[f"expert {k} output"] - won["target"]) ** 2))
        assert errors.loc[k, "rmse_on_won_rows"] == pytest.approx(rmse)
        all_rmse = np.sqrt(np.mean((table[f"expert {k} output"] - table["target"]) ** 2))
        assert errors.loc[k, "rmse_on_all_rows"] == pytest.approx(all_rmse)
    scatter = ex.expert_vs_target(table, max_points=50)
    assert len(scatter) == 3 * 50 and scatter.groupby("row")["won"].sum().eq(1).all()


def test_ablation_starts_from_the_models_own_prediction(trained):
    model, data, table = trained
    abl = ex.ablation(model, data, "test")
    full = abl[abl["removed"] == "none"].iloc[0]
    if data.task == "regression":
        with torch.no_grad():
            pred = model(torch.as_tensor(data.X_test)).prediction.numpy()
        expected = regression_metrics(pred, data.y_test, data.y_std)
        assert full["rmse"] == pytest.approx(expected["rmse"], rel=1e-4)
        assert abl.attrs["metric"] == "rmse"
    else:
        assert full["accuracy"] == pytest.approx(float(np.mean(table["predicted_class"] == table["target"])))
    modes = set(abl["mode"]) - {"full model"}
    assert modes == ({"zeroed", "renormalised"} if model.config.gate_activation == "softmax" else {"zeroed"})
    assert len(abl) == 1 + 3 * len(modes)
    sign = -1 if abl.attrs["higher_is_better"] else 1
    assert np.allclose(abl["harm"], sign * abl[f"{abl.attrs['metric']}_change"])


def test_zeroing_an_expert_matches_a_manual_mixture():
    model, data = tiny_model("grkan", "mlp", "sigmoid")
    abl = ex.ablation(model, data, "test").set_index(["removed", "mode"])
    with torch.no_grad():
        out = model(torch.as_tensor(data.X_test))
    w = out.gate_weights.numpy().copy()
    w[:, 1] = 0
    bias = model.head.bias.detach().numpy()
    pred = np.einsum("ne,noe->no", w, out.expert_outputs.numpy() - bias[None, :, None]) + bias
    expected = regression_metrics(pred, data.y_test, data.y_std)
    assert abl.loc[("expert 1", "zeroed"), "rmse"] == pytest.approx(expected["rmse"], rel=1e-5)


def test_single_expert_models_have_no_ablation():
    model, data = tiny_model("grkan", "mlp", "sigmoid")
    model1 = type(model)(model.config.__class__(kind="standard", expert_hidden=(4,)), 2, 1)
    with pytest.raises(ValidationError, match="at least 2 experts"):
        ex.ablation(model1, data)


def test_default_regimes_dataset_contingency_from_real_gate_weights():
    """The default dataset ('regimes', GRKAN gate, 3 experts): the contingency table counts true regime against the
    expert with the largest real gate weight, row by row."""
    from kamoe_viz.config import RunConfig
    from kamoe_viz.data import load_dataset
    from kamoe_viz.training import train_run

    config = RunConfig()
    assert config.data.name == "regimes" and config.model.gate == "grkan"
    config.model.expert_hidden = (16,)
    config.train.epochs = 3
    config.train.device = "cpu"
    dataset = load_dataset(config.data)
    run = train_run(config, dataset=dataset)
    table = ex.routing_table(run.model, dataset, "test")
    cont = ex.contingency(table)
    with torch.no_grad():
        winners = run.model.gate_weights(torch.as_tensor(dataset.X_test)).numpy().argmax(1)
    expected = pd.crosstab(dataset.regimes_test, winners).reindex(columns=range(3), fill_value=0)
    got = cont.pivot(index="truth", columns="winner", values="count")
    assert np.array_equal(got.to_numpy(), expected.to_numpy())
    assert list(cont["truth_name"].unique()) == list(dataset.regime_names)
    score = ex.agreement(table)
    assert score["rows"] == len(dataset.X_test) and 0 <= score["nmi"] <= 1
