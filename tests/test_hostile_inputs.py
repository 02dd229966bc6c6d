"""Hostile inputs, generated: random and malformed CSVs through the reader and the validator, random dataset
options through ``load_dataset``.

The contract (issue 7): whatever arrives, the data layer either refuses it with a KamoeError subclass (a message
the app and the CLI can show) or returns a Dataset whose arrays are finite and consistent. Nothing else may escape.
Set KAMOE_HOSTILE_COUNTS=/some/file.json to have the number of inputs tried written there (nothing is printed;
KAMOE_HOSTILE_DEBUG=1 adds why each refused table was refused), KAMOE_FUZZ_RANDOM=1 to explore new inputs.
"""

from __future__ import annotations

import json
import math
import os
from collections import Counter
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kamoe_viz.config import DataConfig
from kamoe_viz.data import Dataset, dataset_from_frame, dataset_info, load_dataset, read_csv_table
from kamoe_viz.errors import KamoeError

# Derandomized so CI runs the same inputs every time; KAMOE_FUZZ_RANDOM=1 explores new ones.
FUZZ = settings(
    max_examples=120,
    deadline=None,
    derandomize=not os.environ.get("KAMOE_FUZZ_RANDOM"),
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.large_base_example],
)
COUNTS: Counter[str] = Counter()


@pytest.fixture(scope="module", autouse=True)
def _write_counts():
    yield
    target = os.environ.get("KAMOE_HOSTILE_COUNTS")
    if target:
        with open(target, "w", encoding="utf-8") as handle:
            tried = sum(n for kind, n in COUNTS.items() if not kind.endswith("_accepted") and ":" not in kind)
            json.dump(dict(COUNTS, total_tried=tried), handle)


# ---------------------------------------------------------------- CSV text pieces

NAMES = st.one_of(
    st.sampled_from(
        [
            "x",
            "y",
            "target",
            "a",
            "b",
            "c",
            " a ",
            "x",
            "é",
            "Température",
            "",
            "1",
            "nan",
            "a,b",
            'q"uote',
            "line\nbreak",
            "\ufeffbom",
            "€",
            "名前",
            "a;b",
            "NaN",
            "None",
            "-",
        ]
    ),
    st.text(min_size=0, max_size=6),
)
CELLS = st.one_of(
    st.integers(-5, 5).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.sampled_from(
        [
            "",
            " ",
            "nan",
            "NaN",
            "inf",
            "-inf",
            "Infinity",
            "1e308",
            "-1e308",
            "1e309",
            "1e-320",
            "1,5",
            "1.5.2",
            "abc",
            "True",
            "false",
            '"1"',
            '"a,b"',
            '"multi\nline"',
            "NULL",
            "#N/A",
            "0x1F",
            "1_000",
            "١٢",
            "  3  ",
            "9" * 400,
            "-0",
            "2024-01-01",
            "€",
            "é",
        ]
    ),
    st.text(max_size=5),
)


def _quote(cell: str) -> str:
    return '"' + cell.replace('"', '""') + '"' if any(ch in cell for ch in ',;"\n\r\t') else cell


@st.composite
def messy_tables(draw: st.DrawFn) -> bytes:
    """Text tables with odd names, mixed cells, ragged rows, quoting, BOMs, odd delimiters and encodings."""
    n_cols = draw(st.integers(1, 8))
    header = [draw(NAMES) for _ in range(n_cols)]
    n_rows = draw(st.integers(0, 40))
    ragged = draw(st.booleans())
    quote = draw(st.booleans())
    delimiter = draw(st.sampled_from([",", ",", ";", "\t", "|", " "]))
    rows = []
    for _ in range(n_rows):
        width = draw(st.integers(max(0, n_cols - 2), n_cols + 2)) if ragged else n_cols
        rows.append([draw(CELLS) for _ in range(width)])
    fix = _quote if quote else (lambda c: c)
    newline = draw(st.sampled_from(["\n", "\r\n", "\r"]))
    text = newline.join(delimiter.join(fix(c) for c in row) for row in [header] + rows)
    if draw(st.booleans()):
        text += newline
    encoding = draw(st.sampled_from(["utf-8", "utf-8", "utf-8-sig", "latin-1", "cp1252", "utf-16", "utf-32"]))
    data = text.encode(encoding, errors="replace")
    if draw(st.integers(0, 9)) == 0:  # occasionally damage the bytes
        position = draw(st.integers(0, max(0, len(data))))
        data = data[:position] + draw(st.binary(min_size=1, max_size=8)) + data[position:]
    return data


@st.composite
def numeric_tables(draw: st.DrawFn) -> bytes:
    """Mostly valid numeric tables with a few planted problems: huge values, NaN/inf, constants, tiny/huge sizes."""
    n_rows = draw(st.sampled_from([60, 60, 200, 25, 20, 21, 19, 1, 2]))
    n_cols = draw(st.integers(2, 6))
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    with np.errstate(over="ignore"):
        values = rng.normal(size=(n_rows, n_cols)) * draw(
            st.sampled_from([1.0, 1.0, 1.0, 1e6, 1e-300, 1e-30, 1e29, 1e30, 1e31, 1e150, 1e308])
        )
    text_cells = [[repr(float(v)) for v in row] for row in values]
    for _ in range(draw(st.sampled_from([0, 0, 0, 0, 0, 1, 2, 3]))):
        i, j = draw(st.integers(0, n_rows - 1)), draw(st.integers(0, n_cols - 1))
        text_cells[i][j] = draw(st.sampled_from(["", "nan", "inf", "-inf", "1e308", "abc", "1e309", "0", "-1e-320"]))
    if draw(st.sampled_from(range(5))) == 4:  # a constant column
        j = draw(st.integers(0, n_cols - 1))
        for row in text_cells:
            row[j] = "7"
    if draw(st.sampled_from(range(3))) == 2:  # an integer/categorical column
        j = draw(st.integers(0, n_cols - 1))
        labels = draw(st.sampled_from([["0", "1"], ["a", "b", "c"], ["1", "2", "10"], ["yes"], ["0.5", "1.5"]]))
        for i, row in enumerate(text_cells):
            row[j] = labels[i % len(labels)]
    header = [f"c{j}" for j in range(n_cols)]
    if draw(st.sampled_from(range(8))) == 7:
        header[-1] = header[0]
    bom = draw(st.sampled_from(["", "", "\ufeff"]))
    return (bom + "\n".join(",".join(r) for r in [header] + text_cells) + "\n").encode("utf-8")


@st.composite
def wide_tables(draw: st.DrawFn) -> bytes:
    """Hundreds to thousands of columns, few rows."""
    n_cols = draw(st.sampled_from([150, 199, 200, 201, 202, 1999, 2000, 2001, 3000]))
    n_rows = draw(st.sampled_from([0, 1, 21, 30]))
    rng = np.random.default_rng(n_cols * 31 + n_rows)
    header = ",".join(f"f{j}" for j in range(n_cols))
    body = "\n".join(",".join(f"{v:.3g}" for v in row) for row in rng.normal(size=(n_rows, n_cols)))
    return (header + "\n" + body).encode("utf-8")


RANDOM_BYTES = st.one_of(st.binary(max_size=300), st.text(max_size=200).map(lambda t: t.encode("utf-8")))


# ---------------------------------------------------------------- the contract


def _check_dataset(ds: Dataset) -> None:
    for split in ("train", "val", "test"):
        X, y, regimes = ds.split(split)
        assert X.dtype == np.float32 and np.isfinite(X).all(), split
        assert len(X) == len(y) and len(X) > 0, split
        if ds.task == "classification":
            assert y.dtype == np.int64 and y.ndim == 1
            assert y.min() >= 0 and y.max() < ds.n_outputs
        else:
            assert y.dtype == np.float32 and y.shape == (len(X), 1) and np.isfinite(y).all()
        if regimes is not None:
            assert len(regimes) == len(X)
    assert np.isfinite(ds.x_mean).all() and np.isfinite(ds.x_std).all() and (ds.x_std > 0).all()
    assert math.isfinite(ds.y_mean) and math.isfinite(ds.y_std) and ds.y_std > 0
    assert ds.X_train.shape[-1] == len(ds.feature_names)


def _through_validator(data: bytes, draw: st.DrawFn, kind: str, max_bytes: int = 5_000_000) -> None:
    COUNTS[kind] += 1
    try:
        frame = read_csv_table(data, max_bytes=max_bytes)
    except KamoeError:
        return
    columns = [str(c) for c in frame.columns]
    target = draw(st.text(max_size=3)) if draw(st.sampled_from(range(10))) == 9 else draw(st.sampled_from(columns))
    pick = draw(st.sampled_from(range(10)))
    if pick < 6:  # the default: every other column
        features = None
    elif pick < 9:  # a subset, sometimes with the target or a repeat in it
        features = draw(
            st.lists(
                st.sampled_from(columns),
                min_size=min(pick - 6, len(columns)),
                max_size=min(len(columns), 250),
                unique=pick < 8,
            )
        )
    else:
        features = draw(st.lists(st.text(max_size=3), max_size=3))
    task = draw(st.sampled_from([None, None, None, "regression", "classification", "clustering"]))
    fractions = draw(st.sampled_from([(0.2, 0.2), (0.05, 0.05), (0.5, 0.5)]))
    try:
        ds = dataset_from_frame(
            frame,
            target,
            features,
            seed=draw(st.integers(0, 3)),
            test_fraction=fractions[0],
            val_fraction=fractions[1],
            task=task,
        )
    except KamoeError as error:
        if os.environ.get("KAMOE_HOSTILE_DEBUG"):
            COUNTS["why: " + str(error)[:50]] += 1
        return
    COUNTS[kind + "_accepted"] += 1
    _check_dataset(ds)


@FUZZ
@given(data=messy_tables(), draw=st.data())
def test_messy_tables_raise_only_our_errors(data: bytes, draw: st.DataObject) -> None:
    _through_validator(data, draw.draw, "messy_csv")


@FUZZ
@given(data=numeric_tables(), draw=st.data())
def test_numeric_tables_with_planted_problems(data: bytes, draw: st.DataObject) -> None:
    _through_validator(data, draw.draw, "numeric_csv")


@settings(FUZZ, max_examples=25)
@given(data=wide_tables(), draw=st.data())
def test_thousands_of_columns(data: bytes, draw: st.DataObject) -> None:
    _through_validator(data, draw.draw, "wide_csv")


@settings(FUZZ, max_examples=150)
@given(data=RANDOM_BYTES, draw=st.data())
def test_random_bytes(data: bytes, draw: st.DataObject) -> None:
    _through_validator(data, draw.draw, "random_bytes", max_bytes=draw.draw(st.sampled_from([64, 5_000_000])))


# ---------------------------------------------------------------- dataset options

SYNTHETIC = ["regimes", "moons", "xor", "spiral", "blobs", "regime_series"]
ODD_VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(10**6), 10**6),
    st.just(10**400),
    st.just(-(10**400)),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=4),
    st.lists(st.integers(), max_size=2),
    st.sampled_from([np.int64(3), np.float32(0.5), np.array([1, 2]), {"a": 1}, b"1", "3", 2.5]),
)


def _small_valid(name: str, key: str) -> st.SearchStrategy[Any]:
    spec = dataset_info(name).options[key]
    if key in ("n_samples", "length"):  # keep the data small
        return st.integers(int(spec.min), int(spec.min) + 300)
    if spec.type == "int":
        return st.integers(int(spec.min), int(spec.max))
    return st.floats(spec.min, spec.max)


@st.composite
def option_configs(draw: st.DrawFn) -> DataConfig:
    """Mostly valid settings, each field replaced by an odd value now and then, sometimes an unknown option."""
    name = draw(st.sampled_from(SYNTHETIC))
    spec = dataset_info(name).options

    def odd() -> bool:
        return draw(st.sampled_from(range(7))) == 6

    options: dict[Any, Any] = {}
    for key in spec:
        if odd():
            options[key] = draw(ODD_VALUES)
        elif key in ("n_samples", "length") or draw(st.booleans()):
            options[key] = draw(_small_valid(name, key))
    if odd():
        options[draw(st.one_of(st.text(max_size=5), st.integers()))] = draw(ODD_VALUES)
    seed = draw(ODD_VALUES) if odd() else draw(st.integers(0, 2**31 - 1))
    test_fraction = draw(ODD_VALUES) if odd() else draw(st.floats(0.05, 0.5))
    val_fraction = draw(ODD_VALUES) if odd() else draw(st.floats(0.05, 0.5))
    return DataConfig(name=name, options=options, seed=seed, test_fraction=test_fraction, val_fraction=val_fraction)


@settings(FUZZ, max_examples=200)
@given(config=option_configs())
def test_random_options_raise_only_our_errors(config: DataConfig) -> None:
    COUNTS["dataset_options"] += 1
    try:
        ds = load_dataset(config)
    except KamoeError:
        return
    COUNTS["dataset_options_accepted"] += 1
    _check_dataset(ds)
