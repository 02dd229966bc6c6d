"""User CSVs: read safely, then validate once (scikit-learn style) before anything trains.

Every refusal is a :class:`~kamoe_viz.errors.DataError` naming the column (or file), the bad value and what to do.
"""

from __future__ import annotations

import csv as csv_module
import io
import os
import re
from pathlib import Path
from typing import IO, Any

import numpy as np
import pandas as pd

from kamoe_viz.data.base import Dataset
from kamoe_viz.data.splits import build_tabular
from kamoe_viz.errors import DataError

DEFAULT_MAX_BYTES = int(float(os.environ.get("KAMOE_MAX_UPLOAD_MB", "50")) * 1024 * 1024)
MAX_READ_COLUMNS = 2000
MAX_FEATURES = 200
MIN_ROWS = 20
MAX_CLASSES = 50
MAX_ABS_VALUE = 1e30
_ENCODINGS = ("utf-8-sig", "cp1252", "latin-1")


def _read_bytes(source: str | os.PathLike | bytes | IO[Any], max_bytes: int) -> tuple[bytes, str]:
    if isinstance(source, (bytes, bytearray, memoryview)):
        raw, label = bytes(source), "upload"
    elif isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if not path.is_file():
            raise DataError("csv_path", str(source), "must be an existing CSV file")
        size = path.stat().st_size
        if size > max_bytes:
            raise DataError(
                path.name,
                f"{size:,} bytes",
                f"must be at most {max_bytes:,} bytes",
                "Use a smaller sample of the rows, or raise KAMOE_MAX_UPLOAD_MB.",
            )
        try:
            raw, label = path.read_bytes(), path.name
        except OSError as error:
            raise DataError("csv_path", str(source), f"could not be read ({type(error).__name__}: {error})") from error
    elif hasattr(source, "read"):
        label = Path(str(getattr(source, "name", "") or "upload")).name or "upload"
        try:
            raw = source.read(max_bytes + 1)  # never more than the cap (+1 to notice a bigger file)
        except (OSError, ValueError) as error:  # closed or unreadable stream
            raise DataError(
                label, "an unreadable file", f"could not be read ({type(error).__name__}: {error})"
            ) from error
        if isinstance(raw, str):
            raw = raw.encode("utf-8")
        if not isinstance(raw, (bytes, bytearray)):
            raise DataError(label, type(raw).__name__, "reading the file must give bytes or text")
        if len(raw) > max_bytes:
            raise DataError(
                label,
                f"more than {max_bytes:,} bytes",
                f"must be at most {max_bytes:,} bytes",
                "Use a smaller sample of the rows, or raise KAMOE_MAX_UPLOAD_MB.",
            )
    else:
        raise DataError("csv", type(source).__name__, "must be a file path, bytes or a file-like object")
    if len(raw) > max_bytes:
        raise DataError(
            label,
            f"{len(raw):,} bytes",
            f"must be at most {max_bytes:,} bytes",
            "Use a smaller sample of the rows, or raise KAMOE_MAX_UPLOAD_MB.",
        )
    return raw, label


_UNICODE_BOMS = (
    (b"\xff\xfe\x00\x00", "utf-32"),
    (b"\x00\x00\xfe\xff", "utf-32"),
    (b"\xff\xfe", "utf-16"),
    (b"\xfe\xff", "utf-16"),
)
_CONTROL = frozenset(chr(c) for c in [*range(9), 11, 12, *range(14, 32), *range(0x7F, 0xA0)])


def _binary(label: str) -> DataError:
    return DataError(
        label,
        "binary content",
        "must be a text CSV file (this looks like a binary file: a spreadsheet, an image or a zip?)",
        "Save it as CSV (UTF-8) and upload again.",
    )


def _decode(raw: bytes, label: str) -> str:
    """Text of the file: UTF-16/32 with a byte-order mark (spreadsheets' "Unicode text"), else UTF-8, Windows-1252
    or Latin-1. Random or binary bytes (NUL bytes, or many control characters once decoded) are refused."""
    text = None
    for bom, encoding in _UNICODE_BOMS:
        if raw.startswith(bom):
            try:
                text = raw.decode(encoding)
            except UnicodeDecodeError:
                raise _binary(label) from None
            break
    if text is None:
        if b"\x00" in raw[:65536]:
            raise _binary(label)
        for encoding in _ENCODINGS:
            try:
                text = raw.decode(encoding)
                break
            except UnicodeDecodeError:
                continue
        else:  # pragma: no cover - latin-1 decodes any bytes
            raise DataError(label, "undecodable bytes", "must be a text CSV in UTF-8 or Latin-1")
    sample = text[:65536]
    if sum(ch in _CONTROL for ch in sample) > 0.01 * len(sample):
        raise _binary(label)
    return text.lstrip("\ufeff")


_DECIMAL_COMMA = re.compile(r"(?:^|;)\s*-?\d+,\d+\s*(?:;|$)", re.MULTILINE)


def _parse(text: str, delimiter: str, decimal: str, label: str) -> pd.DataFrame:
    try:
        return pd.read_csv(io.StringIO(text), sep=delimiter, skipinitialspace=True, low_memory=False, decimal=decimal)
    except pd.errors.EmptyDataError as error:  # before ValueError: it is one
        raise DataError(label, "no columns", "must have a header row and at least one data row") from error
    except (pd.errors.ParserError, ValueError, csv_module.Error) as error:
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise DataError(
            label,
            "malformed CSV",
            f"must be a rectangular table ({first_line[:160]})",
            "Check quoting and that every row has as many fields as the header.",
        ) from error


def _check_row_lengths(text: str, delimiter: str, n_header: int, label: str) -> None:
    """A data row with more fields than the header (other than empty trailing ones) is named with its line."""
    reader = csv_module.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    try:
        next(reader)
        for row in reader:
            if len(row) > n_header and any(field.strip() for field in row[n_header:]):
                raise DataError(
                    label,
                    f"line {reader.line_num} with {len(row)} fields",
                    f"must be a rectangular table (line {reader.line_num} has {len(row)} fields under "
                    f"a header of {n_header})",
                    "Check for a missing column name or a delimiter inside unquoted values.",
                )
    except csv_module.Error:  # quoting problems are reported by the parser with its own message
        return


def _n_numeric(frame: pd.DataFrame) -> int:
    return sum(pd.api.types.is_numeric_dtype(dtype) for dtype in frame.dtypes)


def read_csv_table(source: str | os.PathLike | bytes | IO[Any], max_bytes: int = DEFAULT_MAX_BYTES) -> pd.DataFrame:
    """Read a CSV into a DataFrame: size cap, encoding detection, delimiter sniffing, header checks.

    Accepts what spreadsheets write: a UTF-8 BOM, Windows-1252/Latin-1 text, ``;`` or tab delimiters, decimal
    commas in ``;`` files, CR line endings and trailing delimiters (an unnamed, empty last column is dropped).
    """
    raw, label = _read_bytes(source, max_bytes)
    text = _decode(raw, label)
    if not text.strip():
        raise DataError(label, "an empty file", "must have a header row and at least one data row")
    sample = text[:65536]
    try:
        delimiter = csv_module.Sniffer().sniff(sample, delimiters=",;\t|").delimiter
    except csv_module.Error:
        delimiter = ","
    try:
        header = next(csv_module.reader(io.StringIO(text, newline=""), delimiter=delimiter))
    except (csv_module.Error, StopIteration) as error:
        raise DataError(label, "an unreadable header", f"must start with a header row ({error})") from error
    header = [h.strip() for h in header]
    if len(header) > MAX_READ_COLUMNS:
        raise DataError(
            label,
            f"{len(header)} columns",
            f"must have at most {MAX_READ_COLUMNS} columns",
            "Keep the columns you need.",
        )
    seen: set[str] = set()
    for name in header:
        if name and name in seen:
            raise DataError(
                f"column {name!r}", "appears twice in the header", "column names must be unique", "Rename one of them."
            )
        seen.add(name)
    _check_row_lengths(text, delimiter, len(header), label)
    frame = _parse(text, delimiter, ".", label)
    if delimiter == ";" and _DECIMAL_COMMA.search(sample):
        try:
            european = _parse(text, delimiter, ",", label)
        except DataError:
            european = None
        if european is not None and _n_numeric(european) > _n_numeric(frame):
            frame = european
    index = frame.index
    if not (isinstance(index, pd.RangeIndex) and index.start == 0 and index.step == 1):
        raise DataError(
            label,
            f"rows with {len(header) + 1} fields under a header of {len(header)}",
            "must be a rectangular table (every row as many fields as the header)",
            "Check for a missing column name or a delimiter inside unquoted values.",
        )
    if frame.shape[1] != len(header):
        raise DataError(
            label,
            f"{frame.shape[1]} columns but {len(header)} names in the header",
            "must be a rectangular table",
            "Check the quoting of the header row.",
        )
    keep = []
    for position, name in enumerate(header):
        if name:
            keep.append(position)
        elif not frame.iloc[:, position].isna().all():
            raise DataError(label, f"column {position + 1} has no name", "every column needs a name in the header row")
    if not keep:
        raise DataError(label, "no named columns", "must have a header row naming the columns")
    frame = frame.iloc[:, keep]
    frame.columns = [header[i] for i in keep]
    if len(frame) == 0:
        raise DataError(label, "a header without data rows", "must have at least one data row")
    return frame


def numeric_column(frame: pd.DataFrame, column: str) -> np.ndarray:
    """The column as finite float64 values, or a DataError naming it, an example bad value and its row."""
    series = frame[column]
    if pd.api.types.is_bool_dtype(series):
        return series.to_numpy(dtype=np.float64)
    converted = pd.to_numeric(series, errors="coerce")
    bad = converted.isna() & series.notna()
    if isinstance(series.dtype, pd.StringDtype) or series.dtype == object:
        bad &= series.astype(str).str.strip().ne("")
    if bad.any():
        example = series[bad].iloc[0]
        raise DataError(
            f"column {column!r}",
            example,
            f"must be numeric ({int(bad.sum())} non-numeric value(s), "
            f"first in row {int(np.flatnonzero(bad.to_numpy())[0]) + 1})",
            "Remove the column from the features or encode it as numbers.",
        )
    values = converted.to_numpy(dtype=np.float64)
    missing = ~np.isfinite(values)
    if missing.any():
        raise DataError(
            f"column {column!r}",
            f"{int(missing.sum())} empty, NaN or infinite value(s)",
            f"must have none (first in row {int(np.flatnonzero(missing)[0]) + 1})",
            "Drop or fill those rows before uploading.",
        )
    if np.abs(values).max() > MAX_ABS_VALUE:
        raise DataError(
            f"column {column!r}",
            float(np.abs(values).max()),
            f"values must be at most {MAX_ABS_VALUE:g} in absolute value",
            "Rescale the column (e.g. to thousands or a log scale).",
        )
    return values


def _infer_task(target: pd.Series) -> str:
    numeric = pd.to_numeric(target, errors="coerce")
    if numeric.isna().any() and target.notna().all():
        return "classification"
    values = numeric.dropna().to_numpy()
    if (
        len(values)
        and np.all(np.isfinite(values))
        and np.all(values == np.round(values))
        and len(np.unique(values)) <= 20
    ):
        return "classification"
    return "regression"


def _class_labels(target: pd.Series) -> tuple[np.ndarray, list[str]]:
    """Class indices and names; numeric labels in numeric order (2 before 10), text labels alphabetically."""
    numeric = pd.to_numeric(target, errors="coerce")
    if not pd.api.types.is_bool_dtype(target) and numeric.notna().all() and np.isfinite(numeric.to_numpy(float)).all():
        labels, uniques = pd.factorize(numeric.astype(np.float64), sort=True)
        return labels, [str(int(u)) if float(u).is_integer() and abs(u) < 1e15 else repr(float(u)) for u in uniques]
    labels, uniques = pd.factorize(target.astype(str).str.strip(), sort=True)
    return labels, [str(u) for u in uniques]


def dataset_from_frame(
    frame: pd.DataFrame,
    target: str,
    features: list[str] | tuple[str, ...] | None = None,
    *,
    name: str = "csv",
    seed: int = 0,
    test_fraction: float = 0.2,
    val_fraction: float = 0.2,
    task: str | None = None,
    source: str = "uploaded CSV",
) -> Dataset:
    """Validate a table and turn it into a split, scaled :class:`Dataset`."""
    if not isinstance(frame, pd.DataFrame):
        raise DataError("table", type(frame).__name__, "must be a pandas DataFrame (read a CSV with read_csv_table)")
    if isinstance(features, str):  # one column name, not a sequence of one-letter names
        features = [features]
    columns = [str(c) for c in frame.columns]
    frame = frame.set_axis(columns, axis=1)  # labels such as 0, 1, 2 are addressed by their text from here on
    if len(set(columns)) != len(columns):
        duplicate = next(c for c in columns if columns.count(c) > 1)
        raise DataError(f"column {duplicate!r}", "appears twice", "column names must be unique")
    if target not in columns:
        shown = ", ".join(columns[:12]) + (" ..." if len(columns) > 12 else "")
        raise DataError("target", target, f"must be one of the columns: {shown}")
    features = [c for c in columns if c != target] if features is None else [str(f) for f in features]
    if not features:
        raise DataError("features", [], "need at least one feature column besides the target")
    if target in features:
        raise DataError("features", target, "must not include the target column")
    for feature in features:
        if feature not in columns:
            raise DataError("features", feature, "is not a column of the table")
    if len(set(features)) != len(features):
        raise DataError("features", features, "must not list a column twice")
    if len(features) > MAX_FEATURES:
        raise DataError(
            "features", f"{len(features)} columns", f"must be at most {MAX_FEATURES}", "Pick the columns you need."
        )
    if len(frame) < MIN_ROWS:
        raise DataError("rows", len(frame), f"need at least {MIN_ROWS} rows to split into train/validation/test")
    if task not in (None, "regression", "classification"):
        raise DataError("task", task, "must be regression, classification or None (infer)")
    X = np.column_stack([numeric_column(frame, f) for f in features])
    for j, feature in enumerate(features):
        if np.ptp(X[:, j]) == 0:
            raise DataError(
                f"column {feature!r}",
                float(X[0, j]),
                "is constant (the same value in every row)",
                "Remove it from the features: it carries no information.",
            )
    target_series = frame[target]
    if target_series.isna().any():
        raise DataError(
            f"target column {target!r}",
            f"{int(target_series.isna().sum())} empty value(s)",
            "must have none",
            "Drop those rows before uploading.",
        )
    task = task or _infer_task(target_series)
    class_names = None
    if task == "classification":
        labels, uniques = _class_labels(target_series)
        if len(uniques) < 2:
            raise DataError(
                f"target column {target!r}",
                uniques[0] if len(uniques) else None,
                "needs at least two classes for classification",
            )
        if len(uniques) > MAX_CLASSES:
            raise DataError(
                f"target column {target!r}",
                f"{len(uniques)} classes",
                f"classification allows at most {MAX_CLASSES}",
                "Choose regression for a numeric target (on the command line: --option task=regression).",
            )
        y, class_names = labels, [str(u) for u in uniques]
    else:
        y = numeric_column(frame, target)
        if np.ptp(y) == 0:
            raise DataError(f"target column {target!r}", float(y[0]), "is constant; there is nothing to predict")
    return build_tabular(
        name=name,
        task=task,
        X=X,
        y=y,
        feature_names=features,
        target_name=target,
        seed=seed,
        test_fraction=test_fraction,
        val_fraction=val_fraction,
        description=f"Your CSV: {len(frame):,} rows, {len(features)} features, target {target!r} ({task}).",
        source=source,
        class_names=class_names,
        regimes=y if task == "classification" else None,
        regime_names=class_names,
    )
