"""Captum attributions: Integrated Gradients completeness, Feature Ablation by hand, tables and messages."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from interpret_helpers import tiny_model

from kamoe_viz.errors import ValidationError
from kamoe_viz.interpret import attribution as at
from kamoe_viz.interpret._common import raw_to_scaled

CASES = [
    ("grkan", "mlp", "sigmoid", "regression", False),
    ("grn", "mlp", "softmax", "classification", False),
    ("linear", "kan", "sigmoid", "regression", True),
]


@pytest.mark.parametrize("case", CASES, ids=lambda c: "-".join(map(str, c)))
@pytest.mark.parametrize("baseline", ["mean", "zeros"])
def test_integrated_gradients_completeness(case, baseline):
    """Sum of IG attributions = f(x) - f(baseline), up to a small fraction of the output change."""
    model, data = tiny_model(*case)
    for target in ("prediction", "gate weight: expert 1"):
        check = at.ig_completeness(model, data, target, baseline, max_rows=24, n_steps=256)
        scale = max(float(np.abs(check["output_change"]).max()), 1e-3)
        gap = np.abs(check["attribution_sum"] - check["output_change"])
        assert gap.max() <= 0.02 * scale + 1e-4, (target, gap.max(), scale)
        assert np.allclose(check["delta"].abs(), gap, atol=1e-4)


def test_baselines_are_training_mean_and_raw_zero():
    _, data = tiny_model("grkan", "mlp", "sigmoid")
    assert np.allclose(at.baseline_row(data, "mean"), data.X_train.mean(0), atol=1e-6)
    assert np.allclose(at.baseline_row(data, "zeros"), raw_to_scaled(data, np.zeros(2)), atol=1e-6)
    _, seq = tiny_model("linear", "kan", "sigmoid", "regression", True)
    assert at.baseline_row(seq, "mean").shape == (seq.seq_len, seq.n_features)
    with pytest.raises(ValidationError, match="baseline"):
        at.baseline_row(data, "median")


def test_feature_ablation_matches_a_manual_computation():
    model, data = tiny_model("grkan", "mlp", "sigmoid")
    frame = at.row_attributions(
        model, data, 3, "test", "mean", targets=["gate weight: expert 2"], methods=("ablation",)
    )
    x = data.X_test[3:4].copy()
    base = at.baseline_row(data, "mean")
    with torch.no_grad():
        fx = model.gate_weights(torch.as_tensor(x))[0, 2].item()
        for f, name in enumerate(data.feature_names):
            moved = x.copy()
            moved[0, f] = base[f]
            expected = fx - model.gate_weights(torch.as_tensor(moved))[0, 2].item()
            got = frame[frame["feature"] == name]["attribution"].item()
            assert got == pytest.approx(expected, abs=1e-5)
    assert frame["value"].tolist() == pytest.approx(data.unscale_X(x)[0].tolist(), rel=1e-5)


def test_global_attributions_cover_every_target_and_method():
    model, data = tiny_model("grkan", "kan", "softmax", "classification")
    attributions, deltas = at.global_attributions(model, data, baseline="mean", max_rows=30, n_steps=16)
    targets = at.attribution_targets(model)
    assert targets == ["prediction"] + [f"gate weight: expert {k}" for k in range(3)]
    assert set(attributions["target"]) == set(targets) and set(deltas["target"]) == set(targets)
    assert set(attributions["method"]) == {"Integrated Gradients", "Feature Ablation"}
    sums = attributions.groupby(["target", "method"])["share"].sum()
    assert np.allclose(sums, 1.0) or (sums.between(0.999, 1.001) | (sums == 0)).all()
    assert (attributions["mean_abs"] >= attributions["mean"].abs() - 1e-9).all()
    assert (deltas["rows"] == 30).all()


def test_integrated_gradients_take_more_steps_until_they_converge():
    """With too few steps to start with, each target's steps grow (never past max_steps) until the delta is within
    CONVERGED_DELTA of the output change; without max_steps they stay as asked."""
    model, data = tiny_model("grkan", "mlp", "softmax", "classification")
    _, coarse = at.global_attributions(model, data, max_rows=30, n_steps=2, methods=("ig",))
    assert (coarse["steps"] == 2).all() and (coarse["relative_delta"] > at.CONVERGED_DELTA).any(), coarse
    _, fine = at.global_attributions(model, data, max_rows=30, n_steps=2, methods=("ig",), max_steps=256)
    assert (fine["steps"] <= 256).all() and (fine["steps"] > 2).any()
    done = fine["relative_delta"] <= at.CONVERGED_DELTA
    assert (done | (fine["steps"] == 256)).all(), fine
    assert (fine["relative_delta"] <= coarse["relative_delta"] + 1e-9).all()


def test_sequence_attributions_sum_over_time_per_feature():
    model, data = tiny_model("linear", "kan", "sigmoid", "regression", True)
    frame = at.row_attributions(model, data, 0, "test", "mean", targets=["prediction"])
    assert set(frame["feature"]) == set(data.feature_names)
    ig = frame[frame["method"] == "Integrated Gradients"]
    first = ig.iloc[0]
    assert ig["attribution"].sum() == pytest.approx(first["f_x"] - first["f_baseline"], abs=0.02 + abs(first["delta"]))


def test_bad_requests_are_named():
    model, data = tiny_model("grkan", "mlp", "sigmoid")
    with pytest.raises(ValidationError, match="attribution target"):
        at.global_attributions(model, data, targets=["gate weight: expert 9"], max_rows=5)
    with pytest.raises(ValidationError, match="row"):
        at.row_attributions(model, data, 10_000)
    with pytest.raises(ValidationError, match="method"):
        at.global_attributions(model, data, methods=("shap",), max_rows=5)
