"""Every built-in dataset: shapes, dtypes, split sizes, seeds, train-only scaling, regimes, chronological windows,
and the messages for bad options or names."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from _california import CALIFORNIA_CSV  # env KAMOE_CALIFORNIA_CSV, else ../shared

from kamoe_viz.config import DataConfig
from kamoe_viz.data import DEFAULT_DATASET, Dataset, dataset_info, list_datasets, load_dataset
from kamoe_viz.errors import DataError, KamoeError, ValidationError

NAMES = [info.name for info in list_datasets()]
SEQUENCES = [info.name for info in list_datasets() if info.is_sequence]
TABULAR = [info.name for info in list_datasets() if not info.is_sequence]
# Small but valid settings, to keep the suite fast; every other option keeps its default.
SMALL = {
    "regimes": {"n_samples": 600},
    "moons": {"n_samples": 300},
    "xor": {"n_samples": 300},
    "spiral": {"n_samples": 300},
    "blobs": {"n_samples": 300},
    "regime_series": {"length": 600},
}
# Rows in the fixed real tables (the generated ones have n_samples rows).
REAL_ROWS = {"california": 20640, "diabetes": 442, "wine": 178, "breast_cancer": 569}


@pytest.fixture(autouse=True)
def _california_from_shared_csv(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """California tests read the shared CSV (never download); skipped with a reason when it is absent."""
    name = getattr(request.node, "callspec", None) and request.node.callspec.params.get("name")
    if name == "california":
        if not CALIFORNIA_CSV.is_file():
            pytest.skip(f"California CSV not found at {CALIFORNIA_CSV} (tests never download it)")
        monkeypatch.setenv("KAMOE_CALIFORNIA_CSV", str(CALIFORNIA_CSV))


def load(name: str, seed: int = 0, **kwargs) -> Dataset:
    options = {**SMALL.get(name, {}), **kwargs.pop("options", {})}
    return load_dataset(DataConfig(name=name, options=options, seed=seed, **kwargs))


def raw_rows(ds: Dataset, split: str) -> np.ndarray:
    """Unscaled rows of a split, rounded so they can be compared as sets across loads."""
    return np.round(ds.unscale_X(getattr(ds, f"X_{split}").astype(np.float64)), 3)


def test_registry_lists_the_default_first_with_sane_option_specs() -> None:
    infos = list_datasets()
    assert infos[0].name == DEFAULT_DATASET == "regimes" == DataConfig().name
    assert len(set(NAMES)) == len(NAMES)
    assert {
        "regimes",
        "moons",
        "xor",
        "spiral",
        "blobs",
        "california",
        "diabetes",
        "wine",
        "breast_cancer",
        "regime_series",
        "sunspots",
        "co2",
    } <= set(NAMES)
    for info in infos:
        assert info.task in ("regression", "classification") and info.title and info.description
        assert dataset_info(info.name) is info
        for key, spec in info.options.items():
            if spec.type in ("int", "float"):
                assert spec.min <= spec.default <= spec.max, (info.name, key)
    assert [i.name for i in infos if i.needs_download] == ["california"]


@pytest.mark.parametrize("name", NAMES)
def test_loader_shapes_dtypes_and_metadata(name: str) -> None:
    info = dataset_info(name)
    ds = load(name)
    assert (ds.name, ds.task, ds.is_sequence, ds.is_2d) == (name, info.task, info.is_sequence, info.is_2d)
    assert ds.description and ds.source
    n_features = len(ds.feature_names)
    assert n_features == ds.n_features >= 1
    for split in ("train", "val", "test"):
        X, y, regimes = ds.split(split)
        assert X.dtype == np.float32 and np.isfinite(X).all()
        if ds.is_sequence:
            assert X.ndim == 3 and X.shape[1:] == (ds.seq_len, n_features)
        else:
            assert X.ndim == 2 and X.shape[1] == n_features
        if ds.task == "regression":
            assert y.dtype == np.float32 and y.shape == (len(X), 1) and np.isfinite(y).all()
        else:
            assert y.dtype == np.int64 and y.shape == (len(X),)
            assert y.min() >= 0 and y.max() < ds.n_outputs
        assert (regimes is not None) == info.has_regimes
    if ds.task == "classification":
        assert ds.class_names and len(ds.class_names) == ds.n_outputs >= 2
        assert set(np.unique(ds.y_train)) == set(range(ds.n_outputs)), "every class appears in training"
    else:
        assert ds.n_outputs == 1 and ds.class_names is None


@pytest.mark.parametrize("name", TABULAR)
def test_split_sizes_follow_the_fractions(name: str) -> None:
    ds = load(name, test_fraction=0.25, val_fraction=0.1)
    sizes = ds.sizes()
    n = sum(sizes.values())
    expected_n = REAL_ROWS.get(name) or SMALL[name]["n_samples"]
    assert n == expected_n
    assert sizes["test"] == math.ceil(0.25 * n)  # scikit-learn's rounding
    assert sizes["val"] == math.ceil(0.1 * (n - sizes["test"]))
    # The three splits partition the rows: no row in two splits.
    seen = [{tuple(r) for r in raw_rows(ds, s)} for s in ("train", "val", "test")]
    assert not (seen[0] & seen[1]) and not (seen[0] & seen[2]) and not (seen[1] & seen[2])


@pytest.mark.parametrize("name", NAMES)
def test_same_seed_gives_identical_arrays(name: str) -> None:
    a, b = load(name, seed=3), load(name, seed=3)
    for attr in ("X_train", "y_train", "X_val", "y_val", "X_test", "y_test", "x_mean", "x_std"):
        np.testing.assert_array_equal(getattr(a, attr), getattr(b, attr), err_msg=attr)
    if a.has_regimes:
        np.testing.assert_array_equal(a.regimes_test, b.regimes_test)
    assert (a.y_mean, a.y_std) == (b.y_mean, b.y_std)


@pytest.mark.parametrize("name", [n for n in NAMES if n not in ("sunspots", "co2")])
def test_different_seed_gives_a_different_split(name: str) -> None:
    a, b = load(name, seed=0), load(name, seed=1)
    assert a.sizes() == b.sizes()
    assert not np.array_equal(a.X_train, b.X_train)
    if name in REAL_ROWS:  # the same rows, dealt differently
        test_a = {tuple(r) for r in raw_rows(a, "test")}
        test_b = {tuple(r) for r in raw_rows(b, "test")}
        assert test_a != test_b
        assert len(test_a & test_b) < 0.5 * len(test_a)


@pytest.mark.parametrize("name", ["sunspots", "co2"])
def test_real_series_split_does_not_depend_on_the_seed(name: str) -> None:
    """Chronological splits of a fixed series: the seed has nothing to shuffle."""
    a, b = load(name, seed=0), load(name, seed=5)
    np.testing.assert_array_equal(a.X_test, b.X_test)


@pytest.mark.parametrize("name", TABULAR)
def test_scaling_is_fit_on_the_training_split_only(name: str) -> None:
    ds = load(name)
    varying = ds.X_train.std(axis=0) > 0
    np.testing.assert_allclose(ds.X_train.mean(axis=0), 0.0, atol=1e-4)
    np.testing.assert_allclose(ds.X_train.std(axis=0)[varying], 1.0, atol=1e-3)
    # Validation/test were scaled with the training statistics, so their means are not exactly zero.
    assert np.abs(ds.X_val.mean(axis=0)).max() > 1e-3
    assert np.abs(ds.X_test.mean(axis=0)).max() > 1e-3
    # The recorded statistics are the raw training rows' mean and std.
    raw_train = ds.unscale_X(ds.X_train.astype(np.float64))
    np.testing.assert_allclose(raw_train.mean(axis=0), ds.x_mean, rtol=1e-4, atol=1e-4)
    if ds.task == "regression":
        assert abs(float(ds.y_train.mean())) < 1e-4 and abs(float(ds.y_train.std()) - 1.0) < 1e-3
        assert abs(float(ds.y_test.mean())) > 1e-4
        np.testing.assert_allclose(ds.unscale_y(ds.y_train).mean(), ds.y_mean, rtol=1e-4)
    else:
        assert (ds.y_mean, ds.y_std) == (0.0, 1.0)


@pytest.mark.parametrize("name", [i.name for i in list_datasets() if i.has_regimes])
def test_regimes_are_present_and_named(name: str) -> None:
    ds = load(name)
    assert ds.has_regimes and ds.regime_names
    for split in ("train", "val", "test"):
        X, _, regimes = ds.split(split)
        assert regimes.dtype == np.int64 and regimes.shape == (len(X),)
        assert regimes.min() >= 0 and regimes.max() < len(ds.regime_names)
    assert set(np.unique(ds.regimes_train)) == set(range(len(ds.regime_names))), "every regime in training"


def test_default_regimes_follow_the_sector_of_x0_x1() -> None:
    """The documented meaning: the angle of (x0, x1) picks the regime, each with its own function of x2, x3."""
    ds = load("regimes", options={"n_regimes": 4, "n_features": 6, "noise": 0.0})
    X = ds.unscale_X(ds.X_train.astype(np.float64))
    angle = np.mod(np.arctan2(X[:, 1], X[:, 0]), 2 * np.pi)
    np.testing.assert_array_equal(np.minimum((angle / (np.pi / 2)).astype(int), 3), ds.regimes_train)
    assert ds.feature_names == [f"x{i}" for i in range(6)] and len(ds.regime_names) == 4
    # Noise-free: within one regime y is a function of (x2, x3) only, so two regimes' formulas differ on the
    # same inputs. A least-squares fit per regime on a shared basis explains far more than one global fit.
    y = ds.unscale_y(ds.y_train)[:, 0]
    basis = np.column_stack(
        [
            np.ones(len(X)),
            X[:, 2],
            X[:, 3],
            X[:, 2] ** 2,
            X[:, 3] ** 2,
            X[:, 2] * X[:, 3],
            np.sin(1.5 * X[:, 2]),
            np.tanh(2 * X[:, 3]),
            np.abs(X[:, 2]) * X[:, 3],
            X[:, 0],
            X[:, 1],
        ]
    )
    global_res = np.linalg.lstsq(basis, y, rcond=None)[1][0]
    per_regime = sum(
        np.linalg.lstsq(basis[ds.regimes_train == r], y[ds.regimes_train == r], rcond=None)[1][0] for r in range(4)
    )
    assert per_regime < 0.05 * global_res


@pytest.mark.parametrize("name", ["moons", "spiral", "blobs", "wine", "breast_cancer"])
def test_classification_regimes_are_the_classes(name: str) -> None:
    ds = load(name)
    np.testing.assert_array_equal(ds.regimes_train, ds.y_train)


def test_xor_regime_is_the_quadrant_and_label_the_sign_agreement() -> None:
    ds = load("xor", options={"noise": 0.0})
    X = ds.unscale_X(ds.X_train.astype(np.float64))
    np.testing.assert_array_equal(ds.y_train, (np.sign(X[:, 0]) == np.sign(X[:, 1])).astype(int))
    np.testing.assert_array_equal(ds.regimes_train, (X[:, 0] < 0) * 2 + (X[:, 1] < 0))


@pytest.mark.parametrize(
    ("name", "options", "check"),
    [
        (
            "regimes",
            {"n_samples": 250, "n_features": 7},
            lambda ds: (sum(ds.sizes().values()), ds.n_features) == (250, 7),
        ),
        ("spiral", {"n_classes": 5}, lambda ds: ds.n_outputs == 5),
        ("blobs", {"centers": 3}, lambda ds: ds.n_outputs == 3),
        ("regime_series", {"n_regimes": 4}, lambda ds: len(ds.regime_names) == 4),
        ("regime_series", {"window": 5}, lambda ds: ds.seq_len == 5),
    ],
)
def test_options_take_effect_and_are_recorded(name: str, options: dict, check) -> None:
    ds = load(name, options=options)
    assert check(ds)
    for key, value in options.items():
        assert ds.options[key] == value


@pytest.mark.parametrize("name", SEQUENCES)
@pytest.mark.parametrize("horizon", [1, 3])
def test_sequences_are_windows_split_in_time_order(name: str, horizon: int) -> None:
    window = 6
    ds = load(name, options={"window": window, "horizon": horizon})
    target = ds.feature_names.index(ds.target_name)
    X = np.concatenate([ds.X_train, ds.X_val, ds.X_test])
    y = np.concatenate([ds.y_train, ds.y_val, ds.y_test])[:, 0]
    # Train, then validation, then test, with no gap or shuffle: window i+1 is window i moved by one step,
    # across the split boundaries too.
    np.testing.assert_array_equal(X[1:, :-1], X[:-1, 1:])
    # The target lies `horizon` steps after each window: it is the last step of the window `horizon` later.
    np.testing.assert_array_equal(y[:-horizon], X[horizon:, -1, target])
    sizes = ds.sizes()
    n = sum(sizes.values())
    assert abs(sizes["test"] - 0.2 * n) <= 1 and sizes["train"] > sizes["val"] > 0
    if ds.has_regimes:
        assert len(np.concatenate([ds.regimes_train, ds.regimes_val, ds.regimes_test])) == n


@pytest.mark.parametrize("name", SEQUENCES)
def test_sequence_scaling_comes_from_the_training_period(name: str) -> None:
    window = 4
    ds = load(name, options={"window": window, "horizon": 1})
    # Rebuild the scaled series from the windows: the first window, then each later window's last step.
    X = np.concatenate([ds.X_train, ds.X_val, ds.X_test]).astype(np.float64)
    series = np.concatenate([X[0], X[1:, -1]])
    train_end = len(ds.X_train) + window  # steps up to and including the last training target
    train_part = series[: train_end - 1]  # the last training target's other columns sit in the val windows
    target = ds.feature_names.index(ds.target_name)
    y_all = np.concatenate([X[0, :, target], np.concatenate([ds.y_train, ds.y_val, ds.y_test])[:, 0]])
    assert abs(y_all[:train_end].mean()) < 1e-5 and abs(y_all[:train_end].std() - 1) < 1e-4
    if train_part.shape[1] > 1:
        assert abs(train_part[:, 1].mean()) < 0.05  # exact stats include the one step not seen here
    assert abs(y_all[train_end:].mean()) > 1e-3, "later periods are scaled with the training statistics"
    assert ds.y_mean == pytest.approx(float(ds.x_mean[target])) and ds.y_std == pytest.approx(float(ds.x_std[target]))


def test_sequence_length_sets_the_number_of_windows() -> None:
    ds = load("regime_series", options={"length": 500, "window": 10, "horizon": 2})
    assert sum(ds.sizes().values()) == 500 - 10 - 2 + 1


# ---------------------------------------------------------------- messages


def _message(name: str, options: dict) -> str:
    with pytest.raises(ValidationError) as caught:
        load_dataset(DataConfig(name=name, options=options))
    return str(caught.value)


@pytest.mark.parametrize(
    ("name", "key"), [(i.name, k) for i in list_datasets() for k, s in i.options.items() if s.type in ("int", "float")]
)
def test_out_of_range_and_wrong_type_messages_name_the_option_value_and_range(name: str, key: str) -> None:
    spec = dataset_info(name).options[key]
    too_big = spec.max + (1 if spec.type == "int" else 0.5)
    message = _message(name, {key: too_big})
    assert f"data.options.{key}" in message and f"{too_big:g}" in message
    assert f"from {spec.min:g} to {spec.max:g}" in message
    message = _message(name, {key: spec.min - 1})
    assert f"data.options.{key}" in message and f"{spec.min - 1:g}" in message
    for wrong in ("many", None, [1], True, float("nan"), float("inf"), 10**400):
        message = _message(name, {key: wrong})
        assert f"data.options.{key}" in message and f"from {spec.min:g} to {spec.max:g}" in message, wrong
        assert repr(wrong)[:20] in message
    if spec.type == "int":
        message = _message(name, {key: spec.min + 0.5})
        assert "must be an integer" in message and repr(spec.min + 0.5) in message


def test_numpy_numbers_are_accepted_as_options() -> None:
    ds = load("regimes", options={"n_samples": np.int64(200), "noise": np.float32(0.25)})
    assert sum(ds.sizes().values()) == 200 and ds.options["noise"] == pytest.approx(0.25)
    assert load("regimes", options={"n_samples": 200.0}).options["n_samples"] == 200


@pytest.mark.parametrize("name", NAMES)
def test_unknown_option_message_lists_the_allowed_ones(name: str) -> None:
    message = _message(name, {"bogus": 3})
    assert "data.options.bogus" in message and "got 3" in message and name in message
    allowed = ", ".join(dataset_info(name).options) or "none"
    assert f"allowed: {allowed}" in message


def test_wrong_type_for_a_text_option() -> None:
    message = _message("california", {"csv_path": 5})
    assert "data.options.csv_path" in message and "got 5" in message and "text" in message


def test_unknown_dataset_name_lists_the_known_ones() -> None:
    with pytest.raises(ValidationError) as caught:
        load_dataset(DataConfig(name="mnist"))
    message = str(caught.value)
    assert message.startswith("data.name: got 'mnist'")
    for name in NAMES:
        assert name in message
    with pytest.raises(ValidationError, match="data.name"):
        dataset_info("")


@pytest.mark.parametrize(
    ("field", "value"),
    [("seed", -1), ("seed", "x"), ("test_fraction", 0.9), ("val_fraction", 0.0), ("test_fraction", 10**400)],
)
def test_bad_split_settings_name_the_field(field: str, value) -> None:
    with pytest.raises(ValidationError) as caught:
        load_dataset(DataConfig(name="moons", **{field: value}))
    assert f"data.{field}" in str(caught.value)


def test_options_must_be_a_mapping() -> None:
    with pytest.raises(ValidationError, match="data.options"):
        load_dataset(DataConfig(name="moons", options=[("noise", 0.1)]))


def test_csv_dataset_needs_a_path_and_target(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="csv_path"):
        load_dataset(DataConfig(name="csv"))
    with pytest.raises(DataError, match="must be an existing CSV file"):
        load_dataset(DataConfig(name="csv", csv_path=str(tmp_path / "none.csv"), target="y"))


def test_csv_dataset_through_load_dataset(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(60, 2))
    lines = ["a,b,y"] + [f"{u:.4f},{v:.4f},{u - v:.4f}" for u, v in x]
    path = tmp_path / "mine.csv"
    path.write_text("\n".join(lines))
    ds = load_dataset(DataConfig(name="csv", csv_path=str(path), target="y", features=("b",), seed=2))
    assert (ds.name, ds.task, ds.feature_names, ds.target_name) == ("mine", "regression", ["b"], "y")
    assert sum(ds.sizes().values()) == 60 and str(path) in ds.source
    with pytest.raises(KamoeError, match="'zzz'"):
        load_dataset(DataConfig(name="csv", csv_path=str(path), target="zzz"))


def test_co2_predicts_the_weekly_change_by_default_and_the_level_on_request() -> None:
    change, level = load("co2"), load("co2", options={"target": "level"})
    assert change.feature_names[0] == "co2_change" and level.feature_names[0] == "co2"
    total = [len(d.X_train) + len(d.X_val) + len(d.X_test) for d in (change, level)]
    assert change.options["target"] == "change" and total[0] == total[1] - 1  # differencing drops one week
    # the level's test targets lie far above its training range (the trend); the change's do not
    level_test = level.y_test * level.y_std + level.y_mean
    level_train = level.y_train * level.y_std + level.y_mean
    assert level_test.min() > level_train.max()
    change_test = change.y_test * change.y_std + change.y_mean
    change_train = change.y_train * change.y_std + change.y_mean
    assert change_train.min() < change_test.mean() < change_train.max()
    assert abs(float(change_test.mean())) < 0.1  # ppm per week: about 0.03 on average
    with pytest.raises(ValidationError, match="target"):
        load("co2", options={"target": "trend"})
