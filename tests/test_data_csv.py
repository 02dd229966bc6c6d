"""User CSVs: one test per refusal message of the reader and the validator, and the files spreadsheets really write
(Windows-1252, semicolons, decimal commas, BOMs) read fine; task inference and class names."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from kamoe_viz.data import dataset_from_frame, read_csv_table
from kamoe_viz.errors import DataError

RNG = np.random.default_rng(7)


def table(n: int = 40, **columns) -> pd.DataFrame:
    """A numeric table a, b, y (y = a - 2b + noise) plus any extra columns given."""
    a, b = RNG.normal(size=n), RNG.normal(size=n)
    frame = pd.DataFrame({"a": a, "b": b, "y": a - 2 * b + 0.1 * RNG.normal(size=n)})
    for name, values in columns.items():
        frame[name] = values
    return frame


def csv_bytes(frame: pd.DataFrame, **kwargs) -> bytes:
    return frame.to_csv(index=False, **kwargs).encode(kwargs.pop("encoding", "utf-8"))


def refused(frame: pd.DataFrame, target: str = "y", features=None, **kwargs) -> str:
    with pytest.raises(DataError) as caught:
        dataset_from_frame(frame, target, features, **kwargs)
    return str(caught.value)


def refused_read(data, **kwargs) -> str:
    with pytest.raises(DataError) as caught:
        read_csv_table(data, **kwargs)
    return str(caught.value)


# ---------------------------------------------------------------- the validator's messages


def test_missing_target_lists_the_available_columns() -> None:
    message = refused(table(), target="price")
    assert message.startswith("target: got 'price'") and "a, b, y" in message


def test_feature_not_found() -> None:
    message = refused(table(), features=["a", "colour"])
    assert "features" in message and "'colour'" in message and "not a column" in message


def test_non_numeric_feature_names_column_value_and_row() -> None:
    frame = table(city=["Paris"] * 3 + ["1.5"] * 37)
    message = refused(frame, features=["a", "city"])
    assert "column 'city'" in message and "'Paris'" in message and "3 non-numeric" in message
    assert "row 1" in message and "numeric" in message


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_nan_or_inf_names_column_and_count(bad: float) -> None:
    frame = table()
    frame.loc[[4, 9], "b"] = bad
    message = refused(frame)
    assert "column 'b'" in message and "2 empty, NaN or infinite" in message and "row 5" in message


def test_empty_cells_in_a_csv_are_counted() -> None:
    data = b"a,b,y\n" + b"".join(f"{i},{'' if i % 10 == 3 else i * 2 % 7},{i % 5}.5\n".encode() for i in range(30))
    message = refused(read_csv_table(data))
    assert "column 'b'" in message and "3 empty" in message


def test_missing_target_values_are_refused() -> None:
    frame = table()
    frame.loc[0, "y"] = np.nan
    assert "target column 'y'" in refused(frame) and "1 empty" in refused(frame)


def test_constant_column() -> None:
    message = refused(table(k=[3.0] * 40))
    assert "column 'k'" in message and "constant" in message and "3.0" in message


def test_constant_target() -> None:
    frame = table()
    frame["y"] = 1.25
    message = refused(frame, task="regression")
    assert "target column 'y'" in message and "constant" in message


def test_too_few_rows() -> None:
    message = refused(table(n=19))
    assert message.startswith("rows: got 19") and "at least 20" in message
    dataset_from_frame(table(n=20), "y")  # the minimum is enough


def test_too_many_feature_columns() -> None:
    wide = pd.DataFrame(RNG.normal(size=(30, 202)), columns=[f"f{i}" for i in range(202)])
    message = refused(wide, target="f0")
    assert "201 columns" in message and "at most 200" in message
    ds = dataset_from_frame(wide, "f0", [f"f{i}" for i in range(1, 21)])
    assert ds.n_features == 20


def test_too_many_columns_in_the_file() -> None:
    header = ",".join(f"c{i}" for i in range(2001))
    message = refused_read((header + "\n" + ",".join("1" * 2001) + "\n").encode())
    assert "2001 columns" in message and "at most 2000" in message


def test_target_in_features() -> None:
    message = refused(table(), features=["a", "y"])
    assert "features: got 'y'" in message and "must not include the target" in message


def test_feature_listed_twice_and_no_features() -> None:
    assert "twice" in refused(table(), features=["a", "a"])
    assert "at least one feature" in refused(table()[["y"]].assign(y=np.arange(40.0)))


def test_duplicate_header() -> None:
    message = refused_read(b"a,b,a\n1,2,3\n4,5,6\n")
    assert message.startswith("column 'a': got 'appears twice in the header'") and "unique" in message
    frame = pd.DataFrame(RNG.normal(size=(30, 3)), columns=["a", "b", "a"])
    assert "column 'a'" in refused(frame, target="b")


def test_column_without_a_name() -> None:
    assert "column 2 has no name" in refused_read(b"a,,b\n1,2,3\n4,5,6\n")


def test_empty_file() -> None:
    assert "empty file" in refused_read(b"")
    assert "empty file" in refused_read(b"  \n\n ")


def test_header_only() -> None:
    assert "without data rows" in refused_read(b"a,b,y\n")


def test_binary_file() -> None:
    message = refused_read(b"PK\x03\x04\x14\x00\x06\x00" + bytes(range(256)) * 4)
    assert "binary" in message and "CSV" in message
    assert "binary" in refused_read(bytes(RNG.integers(0, 256, 2000, dtype=np.uint8)))


def test_oversize_file_in_every_form(tmp_path: Path) -> None:
    data = csv_bytes(table(n=200))
    path = tmp_path / "big.csv"
    path.write_bytes(data)
    with open(path, "rb") as stream:  # a file object reads at most the cap, and is named by its file name only
        for source, label, size in [
            (data, "upload", f"{len(data):,}"),
            (path, "big.csv", f"{len(data):,}"),
            (io.BytesIO(data), "upload", "more than 1,000"),
            (stream, "big.csv", "more than 1,000"),
        ]:
            message = refused_read(source, max_bytes=1000)
            assert message.startswith(f"{label}: got '{size} bytes'") and "at most 1,000 bytes" in message
            assert "KAMOE_MAX_UPLOAD_MB" in message
    assert "could not be read" in refused_read(stream)
    assert len(read_csv_table(data, max_bytes=len(data))) == 200


def test_ragged_rows() -> None:
    message = refused_read(b"a,b\n1,2\n3,4,5,6\n7,8\n")
    assert "rectangular" in message
    # One extra field on every row would silently become pandas' index: refused, not misread.
    assert "3 fields under a header of 2" in refused_read(b"a,b\n1,2,3\n4,5,6\n")


def test_missing_file_and_wrong_source_type(tmp_path: Path) -> None:
    assert "existing CSV file" in refused_read(tmp_path / "nothing.csv")
    assert "existing CSV file" in refused_read(tmp_path)
    assert "file path, bytes or a file-like" in refused_read(12345)


def test_bad_task_value() -> None:
    message = refused(table(), task="clustering")
    assert message.startswith("task: got 'clustering'") and "regression, classification" in message


def test_too_many_classes() -> None:
    frame = table(n=120, label=[f"k{i}" for i in range(120)])
    message = refused(frame, target="label", features=["a", "b"])
    assert "target column 'label'" in message and "120 classes" in message and "at most 50" in message


def test_single_class_target() -> None:
    message = refused(table(label=["only"] * 40), target="label", features=["a"])
    assert "target column 'label'" in message and "two classes" in message


# ---------------------------------------------------------------- what reads fine


def test_windows_1252_and_latin1_files_read_fine() -> None:
    frame = table(n=30)
    frame.columns = ["Température", "Größe", "Prix €"]
    data = frame.to_csv(index=False).encode("cp1252")
    read = read_csv_table(data)
    assert list(read.columns) == ["Température", "Größe", "Prix €"]
    np.testing.assert_allclose(read.to_numpy(), frame.to_numpy())
    latin = "Température,Größe,Ville\n" + "".join(f"{i},{i % 7},Orléans{i % 2}\n" for i in range(25))
    read = read_csv_table(latin.encode("latin-1"))
    assert read["Ville"].iloc[0] == "Orléans0"
    ds = dataset_from_frame(read, "Ville")
    assert ds.class_names == ["Orléans0", "Orléans1"]


def test_utf8_bom_and_utf16_with_bom_read_fine() -> None:
    text = table(n=25).to_csv(index=False)
    for data in (b"\xef\xbb\xbf" + text.encode(), text.encode("utf-16")):
        read = read_csv_table(data)
        assert list(read.columns) == ["a", "b", "y"] and len(read) == 25


def test_semicolon_tab_and_decimal_comma_files_read_fine() -> None:
    frame = table(n=25)
    for kwargs in ({"sep": ";"}, {"sep": "\t"}, {"sep": ";", "decimal": ","}, {"sep": "|"}):
        read = read_csv_table(frame.to_csv(index=False, **kwargs).encode())
        assert list(read.columns) == ["a", "b", "y"], kwargs
        np.testing.assert_allclose(read.to_numpy(dtype=float), frame.to_numpy(), err_msg=str(kwargs))


def test_crlf_cr_trailing_delimiter_quotes_and_spaces() -> None:
    rows = [f'{i}, {i * 0.5}, "label, {i % 2}",' for i in range(25)]
    for newline in ("\r\n", "\r", "\n"):
        read = read_csv_table(newline.join(["n, half, name,"] + rows).encode())
        assert list(read.columns) == ["n", "half", "name"]
        assert read["name"].iloc[1] == "label, 1" and read["half"].iloc[4] == 2.0


def test_file_like_and_path_sources(tmp_path: Path) -> None:
    data = csv_bytes(table(n=22))
    path = tmp_path / "t.csv"
    path.write_bytes(data)
    for source in (path, str(path), io.BytesIO(data), io.StringIO(data.decode())):
        assert read_csv_table(source).shape == (22, 3)


def test_huge_values_refused_below_float32_overflow() -> None:
    frame = table()
    frame.loc[2, "a"] = 1e300
    message = refused(frame)
    assert "column 'a'" in message and "1e+300" in message and "at most 1e+30" in message


# ---------------------------------------------------------------- task inference


def test_categorical_string_target_is_classification_with_class_names() -> None:
    frame = table(species=["setosa", "virginica", "versicolor", "setosa"] * 10)
    ds = dataset_from_frame(frame, "species", ["a", "b"])
    assert ds.task == "classification" and ds.class_names == ["setosa", "versicolor", "virginica"]
    assert ds.y_train.dtype == np.int64 and ds.n_outputs == 3
    np.testing.assert_array_equal(ds.regimes_train, ds.y_train)
    test_labels = [ds.class_names[i] for i in ds.y_test]
    assert set(test_labels) <= {"setosa", "versicolor", "virginica"}


def test_integer_target_with_few_values_is_classification_in_numeric_order() -> None:
    frame = table(grade=[1, 2, 10, 2] * 10)
    ds = dataset_from_frame(frame, "grade", ["a", "b"])
    assert ds.task == "classification" and ds.class_names == ["1", "2", "10"]
    counts = np.bincount(np.concatenate([ds.y_train, ds.y_val, ds.y_test]))
    np.testing.assert_array_equal(counts, [10, 20, 10])  # "2" (index 1) appears twice per block


def test_float_target_is_regression() -> None:
    ds = dataset_from_frame(table(), "y")
    assert ds.task == "regression" and ds.y_train.dtype == np.float32 and ds.y_train.shape[1] == 1
    assert ds.feature_names == ["a", "b"] and ds.class_names is None


def test_integer_target_with_many_values_is_regression() -> None:
    ds = dataset_from_frame(table(count=np.arange(40) * 3), "count", ["a", "b"])
    assert ds.task == "regression"


def test_explicit_task_overrides_inference() -> None:
    frame = table(grade=[1, 2, 3, 4] * 10)
    assert dataset_from_frame(frame, "grade", ["a", "b"]).task == "classification"
    ds = dataset_from_frame(frame, "grade", ["a", "b"], task="regression")
    assert ds.task == "regression" and ds.y_train.dtype == np.float32
    np.testing.assert_allclose(np.sort(np.unique(ds.unscale_y(ds.y_train))), [1, 2, 3, 4], atol=1e-5)
    frame = table(level=np.round(RNG.uniform(0, 3, 40), 1))
    ds = dataset_from_frame(frame, "y", ["a", "b"], task="regression")
    assert ds.task == "regression"
    ds = dataset_from_frame(table(k=[0.5, 1.5] * 20), "k", ["a", "b"], task="classification")
    assert ds.class_names == ["0.5", "1.5"]
    assert "must be numeric" in refused(table(s=["x", "z"] * 20), target="s", features=["a"], task="regression")


def test_boolean_target_is_classification() -> None:
    data = "a,b,flag\n" + "".join(f"{i},{i % 3},{'True' if i % 2 else 'False'}\n" for i in range(30))
    ds = dataset_from_frame(read_csv_table(data.encode()), "flag")
    assert ds.task == "classification" and ds.class_names == ["False", "True"]


def test_split_and_scaling_of_a_csv_follow_the_seed() -> None:
    frame = table(n=100)
    a, b, c = (dataset_from_frame(frame, "y", seed=s) for s in (1, 1, 2))
    np.testing.assert_array_equal(a.X_test, b.X_test)
    assert not np.array_equal(a.X_test, c.X_test)
    assert a.sizes() == {"train": 64, "val": 16, "test": 20}
    np.testing.assert_allclose(a.X_train.mean(axis=0), 0, atol=1e-5)
    assert np.abs(a.X_test.mean(axis=0)).max() > 1e-3
