"""User CSVs: one test per refusal message of ``read_csv_table`` and ``dataset_from_frame``, and what is accepted
(encodings, delimiters, file-likes, categorical targets, task inference)."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from _california import CALIFORNIA_CSV  # env KAMOE_CALIFORNIA_CSV, else ../shared

from kamoe_viz.config import DataConfig
from kamoe_viz.data import dataset_from_frame, load_dataset, read_csv_table, tabular
from kamoe_viz.errors import DataError, ValidationError


def table(n: int = 40, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    a, b = rng.normal(size=n), rng.normal(size=n)
    return pd.DataFrame({"a": a, "b": b, "y": a - 2 * b + 0.1 * rng.normal(size=n)})


def refused(func, *args, **kwargs) -> str:
    with pytest.raises(DataError) as caught:
        func(*args, **kwargs)
    return str(caught.value)


def csv_bytes(frame: pd.DataFrame, **kwargs) -> bytes:
    return frame.to_csv(index=False, **kwargs).encode(kwargs.pop("encoding", "utf-8"))


# ---------------------------------------------------------------- read_csv_table: what it accepts


@pytest.mark.parametrize("encoding", ["utf-8", "utf-8-sig", "latin-1", "cp1252", "utf-16"])
def test_reads_common_encodings(encoding: str) -> None:
    text = "Température,prix €,y\n" if encoding != "latin-1" else "Température,prix,y\n"
    text += "".join(f"{i},{i * 2},{i % 3}\n" for i in range(25))
    frame = read_csv_table(text.encode(encoding))
    assert frame.columns[0] == "Température" and frame.shape == (25, 3)
    assert frame["y"].tolist()[:4] == [0, 1, 2, 0]


@pytest.mark.parametrize("delimiter", [",", ";", "\t", "|"])
def test_sniffs_the_delimiter(delimiter: str) -> None:
    frame = read_csv_table(table().to_csv(index=False, sep=delimiter).encode())
    assert list(frame.columns) == ["a", "b", "y"] and len(frame) == 40
    np.testing.assert_allclose(frame["a"], table()["a"])


def test_reads_paths_and_file_likes(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    path.write_bytes(csv_bytes(table()))
    for source in (path, str(path), io.BytesIO(csv_bytes(table())), io.StringIO(table().to_csv(index=False))):
        assert read_csv_table(source).shape == (40, 3)


# ---------------------------------------------------------------- read_csv_table: one test per refusal


def test_empty_file() -> None:
    assert "an empty file" in refused(read_csv_table, b"  \n\n")


def test_binary_file_with_nul_bytes() -> None:
    message = refused(read_csv_table, b"PK\x03\x04\x14\x00\x06\x00" + bytes(range(256)))
    assert "binary content" in message and "CSV" in message


def test_random_bytes_without_nul_are_refused_as_binary() -> None:
    garbage = bytes(np.random.default_rng(0).integers(1, 256, 600).astype(np.uint8))
    assert "binary content" in refused(read_csv_table, garbage)


def test_oversize_bytes_and_files(tmp_path: Path) -> None:
    data = csv_bytes(table())
    message = refused(read_csv_table, data, max_bytes=100)
    assert f"{len(data):,} bytes" in message and "at most 100 bytes" in message and "KAMOE_MAX_UPLOAD_MB" in message
    path = tmp_path / "big.csv"
    path.write_bytes(data)
    assert "big.csv" in refused(read_csv_table, path, max_bytes=100)


def test_duplicate_header() -> None:
    message = refused(read_csv_table, b"a,b,a\n1,2,3\n")
    assert "column 'a'" in message and "appears twice" in message and "unique" in message


def test_header_without_rows() -> None:
    assert "without data rows" in refused(read_csv_table, b"a,b,y\n")


def test_ragged_rows() -> None:
    assert "rectangular" in refused(read_csv_table, b"a,b\n1,2,3,4\n5,6\n")


def test_too_many_columns_to_read() -> None:
    header = ",".join(f"c{i}" for i in range(2500))
    message = refused(read_csv_table, (header + "\n" + ",".join("1" * 2500) + "\n").encode())
    assert "2500 columns" in message and "at most 2000" in message


def test_unnamed_column_with_values() -> None:
    assert "column 2 has no name" in refused(read_csv_table, b"a,,c\n1,2,3\n")


def test_missing_file_and_wrong_source_type(tmp_path: Path) -> None:
    assert "must be an existing CSV file" in refused(read_csv_table, tmp_path / "nope.csv")
    assert "file path, bytes or a file-like" in refused(read_csv_table, 12345)


# ---------------------------------------------------------------- dataset_from_frame: one test per refusal


def test_missing_target_lists_the_columns() -> None:
    message = refused(dataset_from_frame, table(), "price")
    assert "target: got 'price'" in message and "a, b, y" in message


def test_feature_not_found() -> None:
    assert "features: got 'c'" in refused(dataset_from_frame, table(), "y", ["a", "c"])


def test_non_numeric_feature_names_column_value_and_row() -> None:
    frame = table()
    frame["a"] = frame["a"].astype(object)
    frame.loc[4, "a"] = "n/a?"
    message = refused(dataset_from_frame, frame, "y")
    assert "column 'a'" in message and "'n/a?'" in message and "numeric" in message and "row 5" in message


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_nan_and_inf_name_column_and_count(bad: float) -> None:
    frame = table()
    frame.loc[[2, 9, 11], "b"] = bad
    message = refused(dataset_from_frame, frame, "y")
    assert "column 'b'" in message and "3 empty, NaN or infinite" in message and "row 3" in message


def test_constant_column() -> None:
    frame = table().assign(c=7.5)
    message = refused(dataset_from_frame, frame, "y")
    assert "column 'c'" in message and "7.5" in message and "constant" in message


def test_too_few_rows() -> None:
    message = refused(dataset_from_frame, table(n=19), "y")
    assert "rows: got 19" in message and "at least 20" in message
    assert dataset_from_frame(table(n=20), "y").sizes() == {"train": 12, "val": 4, "test": 4}


def test_too_many_feature_columns() -> None:
    rng = np.random.default_rng(1)
    frame = pd.DataFrame(rng.normal(size=(30, 202)), columns=[f"f{i}" for i in range(202)])
    message = refused(dataset_from_frame, frame, "f0")
    assert "201 columns" in message and "at most 200" in message
    assert dataset_from_frame(frame, "f0", [f"f{i}" for i in range(1, 201)]).n_features == 200


def test_target_in_features() -> None:
    assert "must not include the target" in refused(dataset_from_frame, table(), "y", ["a", "y"])


def test_duplicate_column_names() -> None:
    frame = pd.DataFrame(np.random.default_rng(2).normal(size=(30, 3)), columns=["a", "a", "y"])
    message = refused(dataset_from_frame, frame, "y")
    assert "column 'a'" in message and "appears twice" in message


def test_repeated_feature() -> None:
    assert "twice" in refused(dataset_from_frame, table(), "y", ["a", "a"])


def test_empty_target_values() -> None:
    frame = table()
    frame.loc[[0, 5], "y"] = np.nan
    message = refused(dataset_from_frame, frame, "y")
    assert "target column 'y'" in message and "2 empty" in message


def test_constant_targets() -> None:
    assert "at least two classes" in refused(dataset_from_frame, table().assign(y=1), "y")
    assert "nothing to predict" in refused(dataset_from_frame, table().assign(y=1.5), "y", task="regression")


def test_unknown_task() -> None:
    assert "task: got 'clustering'" in refused(dataset_from_frame, table(), "y", task="clustering")


def test_huge_values() -> None:
    frame = table()
    frame.loc[3, "a"] = 1e40
    assert "column 'a'" in refused(dataset_from_frame, frame, "y")


def test_not_a_table() -> None:
    assert "DataFrame" in refused(dataset_from_frame, [[1, 2]], "a")


# ---------------------------------------------------------------- dataset_from_frame: what it accepts


def test_task_inference() -> None:
    rng = np.random.default_rng(3)
    frame = table(60)
    assert dataset_from_frame(frame, "y").task == "regression"
    labels = dataset_from_frame(frame.assign(y=rng.integers(0, 4, 60)), "y")
    assert labels.task == "classification" and labels.class_names == ["0", "1", "2", "3"]
    assert labels.y_train.dtype == np.int64 and labels.y_train.ndim == 1
    many = dataset_from_frame(frame.assign(y=np.arange(60)), "y")
    assert many.task == "regression" and many.y_train.shape == (len(many.X_train), 1)
    forced = dataset_from_frame(frame.assign(y=np.arange(60) % 30), "y", task="classification")
    assert forced.task == "classification" and forced.n_outputs == 30


def test_categorical_target_becomes_classes_but_a_categorical_feature_is_refused() -> None:
    frame = table()
    frame["y"] = np.where(frame["a"] > 0, "high", "low")
    ds = dataset_from_frame(frame, "y")
    assert ds.task == "classification" and ds.class_names == ["high", "low"]
    np.testing.assert_array_equal(ds.regimes_train, ds.y_train)
    frame["c"] = frame["y"]
    assert "column 'c'" in refused(dataset_from_frame, frame, "y")


def test_split_is_reproducible_and_scaled_on_train_only() -> None:
    one, two = dataset_from_frame(table(200), "y", seed=5), dataset_from_frame(table(200), "y", seed=5)
    np.testing.assert_array_equal(one.X_test, two.X_test)
    np.testing.assert_allclose(one.X_train.mean(axis=0), 0, atol=1e-5)
    assert abs(float(one.y_train.mean())) < 1e-5 and not np.allclose(one.X_val.mean(axis=0), 0, atol=1e-5)
    other = dataset_from_frame(table(200), "y", seed=6)
    assert not np.array_equal(one.X_test, other.X_test)


def test_non_text_column_labels_and_a_single_feature_name() -> None:
    frame = pd.DataFrame(np.random.default_rng(4).normal(size=(40, 3)))  # labels 0, 1, 2
    ds = dataset_from_frame(frame, "2")
    assert ds.feature_names == ["0", "1"] and ds.target_name == "2"
    named = table().rename(columns={"a": "ab"})
    assert dataset_from_frame(named, "y", "ab").feature_names == ["ab"]  # not the columns 'a' and 'b'


def test_csv_through_data_config(tmp_path: Path) -> None:
    path = tmp_path / "mine.csv"
    path.write_bytes(csv_bytes(table(50)))
    ds = load_dataset(DataConfig(name="csv", csv_path=str(path), target="y", features=("a", "b"), seed=1))
    assert ds.name == "mine" and ds.feature_names == ["a", "b"] and sum(ds.sizes().values()) == 50
    with pytest.raises(ValidationError, match="data.target"):
        load_dataset(DataConfig(name="csv", csv_path=str(path)))


@pytest.mark.skipif(not CALIFORNIA_CSV.is_file(), reason=f"no California CSV at {CALIFORNIA_CSV}")
def test_california_csv_problems_are_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(tabular.CALIFORNIA_ENV, raising=False)
    frame = pd.read_csv(CALIFORNIA_CSV, nrows=60)
    path = tmp_path / "cal.csv"
    frame.drop(columns=["Latitude", "MedHouseVal"]).to_csv(path, index=False)
    message = refused(load_dataset, DataConfig(name="california", options={"csv_path": str(path)}))
    assert "Latitude, MedHouseVal" in message and "missing" in message
    bad = frame.astype({"HouseAge": object})
    bad.loc[7, "HouseAge"] = "old"
    bad.to_csv(path, index=False)
    message = refused(load_dataset, DataConfig(name="california", options={"csv_path": str(path)}))
    assert "column 'HouseAge'" in message and "'old'" in message


def test_california_offline_without_csv_names_both_fixes(monkeypatch: pytest.MonkeyPatch) -> None:
    """The fetcher fails as on an offline machine with an empty cache (nothing is downloaded)."""
    monkeypatch.delenv(tabular.CALIFORNIA_ENV, raising=False)

    def offline(**_: object) -> None:
        raise OSError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(tabular.sk, "fetch_california_housing", offline)
    message = refused(load_dataset, DataConfig(name="california"))
    assert "KAMOE_CALIFORNIA_CSV" in message and "csv_path" in message and "internet" in message
