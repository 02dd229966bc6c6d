"""The one list of datasets, their options (with defaults and ranges) and ``load_dataset``."""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any, SupportsInt, cast

from kamoe_viz.config import DataConfig
from kamoe_viz.data import csv, sequences, synthetic, tabular
from kamoe_viz.data.base import Dataset
from kamoe_viz.data.descriptions import DESCRIPTIONS
from kamoe_viz.errors import DataError, ValidationError

DEFAULT_DATASET = "regimes"


@dataclass(frozen=True)
class OptionSpec:
    type: str  # int | float | choice | str
    default: Any
    min: float | None = None
    max: float | None = None
    choices: tuple[Any, ...] | None = None
    help: str = ""
    label: str | None = None
    step: float | None = None
    name: str = ""  # filled in from the key of DatasetInfo.options


@dataclass(frozen=True)
class DatasetInfo:
    name: str
    title: str
    task: str
    description: str
    loader: Callable[..., Dataset] = field(repr=False)
    is_sequence: bool = False
    has_regimes: bool = False
    needs_download: bool = False
    options: dict[str, OptionSpec] = field(default_factory=dict)
    is_2d: bool = False

    def __post_init__(self) -> None:
        named = {
            key: spec
            if spec.name == key and spec.label
            else replace(spec, name=key, label=spec.label or key.replace("_", " ").capitalize())
            for key, spec in self.options.items()
        }
        object.__setattr__(self, "options", named)

    @property
    def option_specs(self) -> list[OptionSpec]:
        """The options as a list, each knowing its name (``options`` maps name -> spec)."""
        return list(self.options.values())


def _n_samples(default: int = 1000) -> OptionSpec:
    return OptionSpec("int", default, 100, 50_000, help="Number of rows generated.", step=100)


def _noise(default: float, what: str = "Standard deviation of the Gaussian noise.") -> OptionSpec:
    return OptionSpec("float", default, 0.0, 3.0, help=what, step=0.05)


def _window(default: int) -> dict[str, OptionSpec]:
    return {
        "window": OptionSpec("int", default, 2, 128, help="Time steps the model sees (T)."),
        "horizon": OptionSpec("int", 1, 1, 24, help="How many steps after the window the target lies."),
    }


_REGISTRY: dict[str, DatasetInfo] = {
    info.name: info
    for info in [
        DatasetInfo(
            "regimes",
            "Regimes (synthetic, default)",
            "regression",
            DESCRIPTIONS["regimes"],
            synthetic.regimes,
            has_regimes=True,
            options={
                "n_samples": _n_samples(3000),
                "n_regimes": OptionSpec("int", 3, 2, 6, help="Number of regimes (sectors)."),
                "n_features": OptionSpec("int", 4, 4, 10, help="Inputs; those beyond x3 are noise."),
                "noise": _noise(0.1),
            },
        ),
        DatasetInfo(
            "moons",
            "Moons (2-D)",
            "classification",
            DESCRIPTIONS["moons"],
            synthetic.moons,
            has_regimes=True,
            is_2d=True,
            options={"n_samples": _n_samples(), "noise": _noise(0.2)},
        ),
        DatasetInfo(
            "xor",
            "XOR (2-D)",
            "classification",
            DESCRIPTIONS["xor"],
            synthetic.xor,
            has_regimes=True,
            is_2d=True,
            options={"n_samples": _n_samples(), "noise": _noise(0.1)},
        ),
        DatasetInfo(
            "spiral",
            "Spiral (2-D)",
            "classification",
            DESCRIPTIONS["spiral"],
            synthetic.spiral,
            has_regimes=True,
            is_2d=True,
            options={
                "n_samples": _n_samples(),
                "noise": _noise(0.2, "Angular noise."),
                "n_classes": OptionSpec("int", 2, 2, 5, help="Number of arms."),
            },
        ),
        DatasetInfo(
            "blobs",
            "Gaussian blobs (2-D)",
            "classification",
            DESCRIPTIONS["blobs"],
            synthetic.blobs,
            has_regimes=True,
            is_2d=True,
            options={
                "n_samples": _n_samples(),
                "noise": _noise(1.0, "Blob standard deviation."),
                "centers": OptionSpec("int", 4, 2, 8, help="Number of blobs (classes)."),
            },
        ),
        DatasetInfo(
            "california",
            "California Housing",
            "regression",
            DESCRIPTIONS["california"],
            tabular.california,
            needs_download=True,
            options={
                "csv_path": OptionSpec("str", None, help="Optional local CSV with scikit-learn's California columns.")
            },
        ),
        DatasetInfo("diabetes", "Diabetes", "regression", DESCRIPTIONS["diabetes"], tabular.diabetes),
        DatasetInfo("wine", "Wine", "classification", DESCRIPTIONS["wine"], tabular.wine, has_regimes=True),
        DatasetInfo(
            "breast_cancer",
            "Breast cancer",
            "classification",
            DESCRIPTIONS["breast_cancer"],
            tabular.breast_cancer,
            has_regimes=True,
        ),
        DatasetInfo(
            "regime_series",
            "Regime-switching series (synthetic)",
            "regression",
            DESCRIPTIONS["regime_series"],
            sequences.regime_series,
            is_sequence=True,
            has_regimes=True,
            options={
                "length": OptionSpec("int", 3000, 300, 50_000, help="Series length.", step=100),
                "n_regimes": OptionSpec("int", 3, 2, 4, help="Number of regimes."),
                "persistence": OptionSpec(
                    "float", 0.97, 0.5, 0.999, help="Probability of staying in a regime.", step=0.01
                ),
                "noise": _noise(0.1),
                **_window(16),
            },
        ),
        DatasetInfo(
            "sunspots",
            "Sunspots (yearly)",
            "regression",
            DESCRIPTIONS["sunspots"],
            sequences.sunspots,
            is_sequence=True,
            options=_window(12),
        ),
        DatasetInfo(
            "co2",
            "Mauna Loa CO2 (weekly)",
            "regression",
            DESCRIPTIONS["co2"],
            sequences.co2,
            is_sequence=True,
            options={
                **_window(52),
                "target": OptionSpec(
                    "choice",
                    "change",
                    choices=("change", "level"),
                    label="Predict",
                    help="change: the week-to-week change (stationary; the default). level: the CO2 level "
                    "itself, whose rising trend puts the test weeks outside the training range.",
                ),
            },
        ),
    ]
}


def list_datasets() -> list[DatasetInfo]:
    """Every built-in dataset, the default first. (User CSVs load through name ``csv``.)"""
    return list(_REGISTRY.values())


def dataset_info(name: str) -> DatasetInfo:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ValidationError(
            "data.name", name, f"must be one of {', '.join(_REGISTRY)} (or csv with a csv_path and target)"
        ) from None


def _is_finite(value: numbers.Real) -> bool:
    try:
        return math.isfinite(value)
    except OverflowError:  # an int too large for a float
        return False


def _is_whole(value: numbers.Real) -> bool:
    """True for ints (Python or numpy) and for finite floats without a fractional part."""
    if isinstance(value, numbers.Integral):
        return True
    return _is_finite(value) and float(value).is_integer()


def _same(value: Any, choice: Any) -> bool:
    try:
        return type(value) is type(choice) and bool(value == choice)
    except (TypeError, ValueError):  # arrays and other odd values compare oddly
        return False


def validate_options(info: DatasetInfo, options: dict[str, Any]) -> dict[str, Any]:
    """Check options against the dataset's spec; returns them with their types normalised (options not given stay
    out: the loader applies their defaults)."""
    if not isinstance(options, dict):
        raise ValidationError("data.options", options, "must be a mapping of option name to value")
    clean: dict[str, Any] = {}
    for key, value in options.items():
        if key not in info.options:
            allowed = ", ".join(info.options) or "none"
            raise ValidationError(f"data.options.{key}", value, f"is not an option of {info.name}; allowed: {allowed}")
        spec = info.options[key]
        field_name = f"data.options.{key}"
        if spec.type == "int":
            if isinstance(value, bool) or not isinstance(value, numbers.Real) or not _is_whole(value):
                raise ValidationError(field_name, value, f"must be an integer from {spec.min:g} to {spec.max:g}")
            value = int(cast(SupportsInt, value))  # every Real the check lets through (numpy numbers too)
        elif spec.type == "float":
            if isinstance(value, bool) or not isinstance(value, numbers.Real) or not _is_finite(value):
                raise ValidationError(field_name, value, f"must be a number from {spec.min:g} to {spec.max:g}")
            value = float(value)
        elif spec.type == "choice":
            choices = spec.choices or ()
            if not any(_same(value, choice) for choice in choices):
                raise ValidationError(field_name, value, f"must be one of {', '.join(map(str, choices))}")
        elif spec.type == "str":
            if value is not None and not isinstance(value, str):
                raise ValidationError(field_name, value, "must be text")
            value = value or None
        if spec.min is not None and spec.type in ("int", "float") and not spec.min <= value <= spec.max:
            kind = "an integer" if spec.type == "int" else "a number"
            raise ValidationError(field_name, value, f"must be {kind} from {spec.min:g} to {spec.max:g}")
        clean[key] = value
    return clean


def _validate_config(config: DataConfig) -> None:
    try:
        config.validate()
    except OverflowError:  # an int too large for a float where a fraction belongs
        for name in ("test_fraction", "val_fraction"):
            value = getattr(config, name)
            if isinstance(value, numbers.Real) and not _is_finite(value):
                raise ValidationError(f"data.{name}", value, "must be a number >= 0.05 and <= 0.5") from None
        raise


def load_dataset(config: DataConfig) -> Dataset:
    """Load, split and scale the dataset a :class:`DataConfig` describes."""
    _validate_config(config)
    split = dict(seed=config.seed, test_fraction=config.test_fraction, val_fraction=config.val_fraction)
    if config.name == "csv" or (config.csv_path and config.name not in _REGISTRY):
        if not config.csv_path:
            raise ValidationError("data.csv_path", config.csv_path, "a CSV dataset needs csv_path and target")
        if not config.target:
            raise ValidationError("data.target", config.target, "a CSV dataset needs a target column")
        check_csv_options(config.options)
        frame = csv.read_csv_table(config.csv_path)
        return dataset_from_frame_config(frame, config)
    info = dataset_info(config.name)
    options = validate_options(info, config.options)
    dataset = info.loader(**split, **options)
    if dataset.is_sequence and dataset.X_train.shape[0] < 10:
        raise DataError(
            "data.options",
            options,
            "leave too few training windows (fewer than 10)",
            "Use a shorter window or horizon, or a longer series.",
        )
    return dataset


CSV_OPTIONS = {"task": ("regression", "classification")}  # a CSV's only option: the task, else inferred


def check_csv_options(options: dict[str, Any]) -> None:
    """A CSV dataset takes only ``task``; any other option is refused by name (it was silently ignored)."""
    for key, value in options.items():
        if key not in CSV_OPTIONS:
            raise ValidationError(
                f"data.options.{key}",
                value,
                "is not an option of a CSV dataset; allowed: task "
                "(regression or classification, e.g. --option task=regression)",
            )
        if value not in CSV_OPTIONS[key]:
            raise ValidationError(f"data.options.{key}", value, f"must be one of {', '.join(CSV_OPTIONS[key])}")


def dataset_from_frame_config(frame, config: DataConfig) -> Dataset:
    from pathlib import Path

    if config.target is None:
        raise ValidationError("data.target", None, "is required for a CSV dataset: the column to predict")
    return csv.dataset_from_frame(
        frame,
        config.target,
        list(config.features) if config.features else None,
        name=Path(config.csv_path).stem if config.csv_path else "csv",
        seed=config.seed,
        test_fraction=config.test_fraction,
        val_fraction=config.val_fraction,
        source=f"CSV file {config.csv_path}",
        task=config.options.get("task"),
    )
