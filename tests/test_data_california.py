"""California Housing: from the shared CSV (env variable or the csv_path option), never downloaded in tests, and the
messages when the CSV is wrong or when neither a CSV nor scikit-learn's cache is there."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from _california import CALIFORNIA_CSV  # env KAMOE_CALIFORNIA_CSV, else ../shared

from kamoe_viz.config import DataConfig
from kamoe_viz.data import load_dataset, tabular
from kamoe_viz.errors import DataError

FEATURES = ["MedInc", "HouseAge", "AveRooms", "AveBedrms", "Population", "AveOccup", "Latitude", "Longitude"]

needs_csv = pytest.mark.skipif(
    not CALIFORNIA_CSV.is_file(), reason=f"California CSV not found at {CALIFORNIA_CSV} (tests never download it)"
)


@pytest.fixture(autouse=True)
def _no_download(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any test here that reached scikit-learn's fetcher would fail loudly instead of touching the network."""

    def refuse(*args, **kwargs):
        raise OSError("network disabled in tests: no cached copy of California Housing")

    monkeypatch.setattr(tabular.sk, "fetch_california_housing", refuse)
    monkeypatch.delenv("KAMOE_CALIFORNIA_CSV", raising=False)


@needs_csv
def test_env_variable_csv(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KAMOE_CALIFORNIA_CSV", str(CALIFORNIA_CSV))
    ds = load_dataset(DataConfig(name="california"))
    assert ds.feature_names == FEATURES and ds.target_name == "MedHouseVal" and ds.task == "regression"
    assert sum(ds.sizes().values()) == 20640 and ds.sizes()["test"] == 4128
    assert str(CALIFORNIA_CSV) in ds.source
    raw = pd.read_csv(CALIFORNIA_CSV)
    # Unscaled values are the file's values (float32 round trip).
    back = ds.unscale_y(ds.y_train.astype(np.float64))
    assert back.min() >= raw["MedHouseVal"].min() - 1e-4 and back.max() <= raw["MedHouseVal"].max() + 1e-4
    X = ds.unscale_X(np.concatenate([ds.X_train, ds.X_val, ds.X_test]).astype(np.float64))
    np.testing.assert_allclose(np.sort(X[:, 0]), np.sort(raw["MedInc"].to_numpy()), rtol=1e-5, atol=1e-4)


@needs_csv
def test_csv_path_option_overrides_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("KAMOE_CALIFORNIA_CSV", str(tmp_path / "elsewhere.csv"))
    ds = load_dataset(DataConfig(name="california", options={"csv_path": str(CALIFORNIA_CSV)}, seed=4))
    assert sum(ds.sizes().values()) == 20640 and ds.options == {"csv_path": str(CALIFORNIA_CSV)}


@needs_csv
def test_a_csv_missing_columns_names_them(tmp_path: Path) -> None:
    path = tmp_path / "partial.csv"
    pd.read_csv(CALIFORNIA_CSV, nrows=200).drop(columns=["MedInc", "Latitude"]).to_csv(path, index=False)
    with pytest.raises(DataError) as caught:
        load_dataset(DataConfig(name="california", options={"csv_path": str(path)}))
    message = str(caught.value)
    assert "partial.csv" in message and "MedInc, Latitude" in message and "missing" in message
    assert "fetch_california_housing" in message  # says where the expected column names come from


def test_missing_csv_files_are_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    absent = tmp_path / "nope.csv"
    with pytest.raises(DataError) as caught:
        load_dataset(DataConfig(name="california", options={"csv_path": str(absent)}))
    assert str(caught.value).startswith(f"data.options.csv_path: got '{absent}'")
    monkeypatch.setenv("KAMOE_CALIFORNIA_CSV", str(absent))
    with pytest.raises(DataError) as caught:
        load_dataset(DataConfig(name="california"))
    assert str(caught.value).startswith(f"KAMOE_CALIFORNIA_CSV: got '{absent}'")
    with pytest.raises(DataError, match="existing CSV file"):
        load_dataset(DataConfig(name="california", options={"csv_path": "~no_such_user_kamoe/x.csv"}))


def test_csv_with_missing_values_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "holes.csv"
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(rng.uniform(1, 5, size=(50, 9)), columns=FEATURES + ["MedHouseVal"])
    frame.loc[[3, 7], "AveRooms"] = np.nan
    frame.to_csv(path, index=False)
    with pytest.raises(DataError) as caught:
        load_dataset(DataConfig(name="california", options={"csv_path": str(path)}))
    assert "column 'AveRooms'" in str(caught.value) and "2 empty, NaN or infinite" in str(caught.value)


def test_no_csv_and_no_cache_tells_both_fixes() -> None:
    with pytest.raises(DataError) as caught:
        load_dataset(DataConfig(name="california"))
    message = str(caught.value)
    assert message.startswith("data.name: got 'california'")
    assert "OSError" in message  # what went wrong underneath
    assert "internet" in message  # fix 1: let scikit-learn cache it once
    assert "KAMOE_CALIFORNIA_CSV" in message and "csv_path" in message  # fix 2: point at a CSV
