"""Real tabular datasets: California Housing (fetcher or CSV) and scikit-learn's bundled sets."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn import datasets as sk

from kamoe_viz.data.base import Dataset
from kamoe_viz.data.splits import build_tabular
from kamoe_viz.errors import DataError

CALIFORNIA_FEATURES = ["MedInc", "HouseAge", "AveRooms", "AveBedrms", "Population", "AveOccup", "Latitude", "Longitude"]
CALIFORNIA_TARGET = "MedHouseVal"
CALIFORNIA_ENV = "KAMOE_CALIFORNIA_CSV"


def _california_frame(csv_path: str | None) -> tuple[pd.DataFrame, str]:
    path = csv_path or os.environ.get(CALIFORNIA_ENV) or None
    if path:
        from kamoe_viz.data.csv import read_csv_table

        try:
            file = Path(path).expanduser()
        except RuntimeError:  # "~someone" without such a home directory
            file = Path(path)
        if not file.is_file():
            raise DataError(
                "data.options.csv_path" if csv_path else CALIFORNIA_ENV,
                str(path),
                "must be the path of an existing CSV file with scikit-learn's California columns",
            )
        frame = read_csv_table(file, max_bytes=200 * 1024 * 1024)
        missing = [c for c in CALIFORNIA_FEATURES + [CALIFORNIA_TARGET] if c not in frame.columns]
        if missing:
            raise DataError(
                f"California CSV {file.name}",
                ", ".join(missing),
                f"these columns are missing; it needs {', '.join(CALIFORNIA_FEATURES)} and "
                f"{CALIFORNIA_TARGET} (scikit-learn's fetch_california_housing(as_frame=True) columns)",
            )
        return frame, f"CSV file {file}"
    try:
        with warnings.catch_warnings():  # offline, scikit-learn warns "Retry downloading" per attempt: one message
            warnings.filterwarnings("ignore", message="Retry downloading")
            bunch = sk.fetch_california_housing(as_frame=True, n_retries=1, delay=0.1)
    except Exception as error:  # no network and no cache
        raise DataError(
            "data.name",
            "california",
            f"could not be downloaded or found in scikit-learn's cache ({type(error).__name__}: {str(error)[:120]})",
            f"Connect once to the internet so scikit-learn can cache it, or set {CALIFORNIA_ENV} (or the dataset "
            "option csv_path) to a CSV with scikit-learn's column names.",
        ) from error
    return bunch.frame, "scikit-learn fetch_california_housing (cached in scikit-learn's data home)"


def california(
    *, seed: int, test_fraction: float, val_fraction: float, csv_path: str | None = None, **_: object
) -> Dataset:
    frame, source = _california_frame(csv_path)
    from kamoe_viz.data.csv import numeric_column  # names the column, an example bad value and the row

    X = np.column_stack([numeric_column(frame, column) for column in CALIFORNIA_FEATURES])
    y = numeric_column(frame, CALIFORNIA_TARGET)
    return build_tabular(
        name="california",
        task="regression",
        X=X,
        y=y,
        feature_names=CALIFORNIA_FEATURES,
        target_name=CALIFORNIA_TARGET,
        seed=seed,
        test_fraction=test_fraction,
        val_fraction=val_fraction,
        description="California Housing (1990 census, 20,640 block groups): predict the median house value "
        "(in $100,000) from income, house age, rooms, occupancy and location. The KAMoE paper's "
        "tabular benchmark.",
        source=source,
        options={"csv_path": csv_path} if csv_path else {},
    )


def _sklearn_set(
    name: str, loader, task: str, description: str, seed: int, test_fraction: float, val_fraction: float
) -> Dataset:
    bunch = loader()
    X = np.asarray(bunch.data, dtype=np.float64)
    y = np.asarray(bunch.target)
    class_names = [str(c) for c in bunch.target_names] if task == "classification" else None
    return build_tabular(
        name=name,
        task=task,
        X=X,
        y=y,
        feature_names=[str(f) for f in bunch.feature_names],
        target_name="class" if task == "classification" else "target",
        seed=seed,
        test_fraction=test_fraction,
        val_fraction=val_fraction,
        description=description,
        source=f"scikit-learn load_{name} (bundled)",
        class_names=class_names,
        regimes=y if task == "classification" else None,
        regime_names=class_names,
    )


def diabetes(*, seed: int, test_fraction: float, val_fraction: float, **_: object) -> Dataset:
    return _sklearn_set(
        "diabetes",
        sk.load_diabetes,
        "regression",
        "Diabetes progression one year after baseline from 10 clinical measurements (442 patients; "
        "scikit-learn, bundled).",
        seed,
        test_fraction,
        val_fraction,
    )


def wine(*, seed: int, test_fraction: float, val_fraction: float, **_: object) -> Dataset:
    return _sklearn_set(
        "wine",
        sk.load_wine,
        "classification",
        "Three wine cultivars from 13 chemical measurements (178 wines; scikit-learn, bundled). Regime = cultivar.",
        seed,
        test_fraction,
        val_fraction,
    )


def breast_cancer(*, seed: int, test_fraction: float, val_fraction: float, **_: object) -> Dataset:
    return _sklearn_set(
        "breast_cancer",
        sk.load_breast_cancer,
        "classification",
        "Malignant vs benign tumours from 30 cell-nucleus features (569 cases; scikit-learn, "
        "bundled). Regime = diagnosis.",
        seed,
        test_fraction,
        val_fraction,
    )
