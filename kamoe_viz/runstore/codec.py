"""Turn a trained run into run-file members (bytes) and back, trusting nothing on the way back.

Weights and dataset arrays are safetensors (no pickle, no code); config, metrics and dataset description are JSON;
the history is CSV. Decoding checks every member's structure: the config through ``RunConfig.from_dict``, the
dataset arrays against their description, and the weights key by key and shape by shape against the model that
``build_model`` makes from the config, then runs the model once on a few rows.
"""

from __future__ import annotations

import dataclasses
import io
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from kamoe_viz.config import RunConfig
from kamoe_viz.data.base import TASKS, Dataset
from kamoe_viz.errors import KamoeError, RunFileError
from kamoe_viz.runstore.fileformat import dump_json, load_json, sha256

if TYPE_CHECKING:
    from kamoe_viz.nn.moe import KAMoE
    from kamoe_viz.training.results import TrainedRun, TrainResult

DEFAULT_MAX_DATASET_BYTES = 256 * 1024**2  # larger datasets are rebuilt from their loader instead of stored
_ARRAY_DTYPES = (np.float32, np.float64, np.int64, np.int32)
_log = logging.getLogger(__name__)


# ----- encode -------------------------------------------------------------------------------------------------------
def _array_fields(dataset: Dataset) -> dict[str, np.ndarray]:
    arrays = {}
    for f in dataclasses.fields(dataset):
        value = getattr(dataset, f.name)
        if isinstance(value, np.ndarray):
            arrays[f.name] = np.ascontiguousarray(value)
    return arrays


def dataset_fingerprint(dataset: Dataset) -> dict[str, str]:
    """sha256 of each split's features and targets: equal fingerprints mean the same data in the same order."""
    out = {}
    for split in ("train", "val", "test"):
        for part in ("X", "y"):
            arr = np.ascontiguousarray(getattr(dataset, f"{part}_{split}"))
            out[f"{part}_{split}"] = sha256(str(arr.dtype).encode() + str(arr.shape).encode() + arr.tobytes())
    return out


def encode(
    run: TrainedRun, csv: bytes | None = None, max_dataset_bytes: int = DEFAULT_MAX_DATASET_BYTES
) -> dict[str, bytes]:
    """Members (all but the manifest) of a TrainedRun."""
    from safetensors.numpy import save as save_numpy
    from safetensors.torch import save as save_torch

    config: RunConfig = run.config
    dataset: Dataset = run.dataset
    state = {k: v.detach().to("cpu").clone().contiguous() for k, v in run.model.state_dict().items()}
    members = {
        "config.json": dump_json(config.to_dict()),
        "weights.safetensors": save_torch(state),
    }
    result = run.result
    stored = {f.name: getattr(result, f.name) for f in dataclasses.fields(result) if f.name != "history"}
    members["metrics.json"] = dump_json(stored)
    history = result.history if isinstance(result.history, pd.DataFrame) else pd.DataFrame(result.history)
    members["history.csv"] = history.to_csv(index=False).encode("utf-8")
    arrays = _array_fields(dataset)
    meta = {f.name: getattr(dataset, f.name) for f in dataclasses.fields(dataset) if f.name not in arrays}
    meta["shapes"] = {k: list(v.shape) for k, v in arrays.items()}
    meta["dtypes"] = {k: str(v.dtype) for k, v in arrays.items()}
    meta["fingerprint"] = dataset_fingerprint(dataset)
    meta["n_features"], meta["n_outputs"], meta["seq_len"] = dataset.n_features, dataset.n_outputs, dataset.seq_len
    meta["arrays_stored"] = sum(a.nbytes for a in arrays.values()) <= max_dataset_bytes
    members["dataset.json"] = dump_json(meta)
    if meta["arrays_stored"]:
        members["dataset.safetensors"] = save_numpy(arrays)
    if csv is not None:
        members["data.csv"] = bytes(csv)
    timeline = getattr(run, "timeline", None)
    if timeline is not None and timeline.snapshots:
        members.update(timeline.to_members())
    return members


# ----- decode -------------------------------------------------------------------------------------------------------
def decode_config(members: Mapping[str, bytes], where: str) -> RunConfig:
    raw = load_json("config.json", members["config.json"], where)
    try:
        return RunConfig.from_dict(raw)
    except KamoeError as exc:
        raise RunFileError(f"{where}: config.json is not a valid run configuration: {exc}") from exc
    except (TypeError, ValueError, AttributeError) as exc:  # e.g. a field of the wrong JSON shape
        raise RunFileError(f"{where}: config.json is not a valid run configuration ({exc}).") from None


def _text_list(where: str, key: str, value: Any, *, optional: bool = False) -> list[str] | None:
    if value is None and optional:
        return None
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise RunFileError(f"{where}: dataset.json field {key!r} must be a list of texts.")
    return list(value)


def decode_dataset_meta(members: Mapping[str, bytes], where: str) -> dict[str, Any]:
    meta = load_json("dataset.json", members["dataset.json"], where)
    if not isinstance(meta, dict):
        raise RunFileError(f"{where}: dataset.json must be an object.")
    if meta.get("task") not in TASKS:
        raise RunFileError(f"{where}: dataset.json task {meta.get('task')!r} must be one of {', '.join(TASKS)}.")
    for key in ("name", "target_name"):
        if not isinstance(meta.get(key), str):
            raise RunFileError(f"{where}: dataset.json field {key!r} must be text.")
    meta["feature_names"] = _text_list(where, "feature_names", meta.get("feature_names"))
    for key in ("class_names", "regime_names"):
        meta[key] = _text_list(where, key, meta.get(key), optional=True)
    for key in ("n_features", "n_outputs"):
        value = meta.get(key)
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 1_000_000:
            raise RunFileError(f"{where}: dataset.json field {key!r} must be a positive integer, got {value!r}.")
    seq_len = meta.get("seq_len")
    if seq_len is not None and (isinstance(seq_len, bool) or not isinstance(seq_len, int) or seq_len < 1):
        raise RunFileError(f"{where}: dataset.json field 'seq_len' must be null or a positive integer.")
    if len(meta["feature_names"]) != meta["n_features"]:
        raise RunFileError(
            f"{where}: dataset.json lists {len(meta['feature_names'])} feature names for {meta['n_features']} features."
        )
    if not isinstance(meta.get("fingerprint"), dict):
        raise RunFileError(f"{where}: dataset.json has no fingerprint of the data.")
    return meta


_ARRAY_NAMES = {f"{p}_{s}" for p in ("X", "y", "regimes") for s in ("train", "val", "test")} | {"x_mean", "x_std"}


def _dataset_kwargs(meta: Mapping[str, Any]) -> dict[str, Any]:
    names = {f.name for f in dataclasses.fields(Dataset)} - _ARRAY_NAMES
    kwargs = {k: v for k, v in meta.items() if k in names}
    kwargs["is_sequence"] = bool(kwargs.get("is_sequence", False))
    for key in ("description", "source"):
        if not isinstance(kwargs.get(key, ""), str):
            kwargs[key] = str(kwargs[key])
    for key in ("y_mean", "y_std"):
        if key in kwargs:
            value = kwargs[key]
            kwargs[key] = float("nan") if value is None else float(value)
    if not isinstance(kwargs.get("options", {}), dict):
        kwargs["options"] = {}
    return kwargs


def decode_stored_dataset(members: Mapping[str, bytes], meta: Mapping[str, Any], where: str) -> Dataset:
    """The exact arrays the model was trained on, checked against their description."""
    from safetensors.numpy import load as load_numpy

    try:
        arrays = load_numpy(members["dataset.safetensors"])
    except Exception as exc:  # safetensors raises its own error type for malformed headers
        raise RunFileError(f"{where}: dataset.safetensors cannot be read ({exc}).") from None
    allowed = {f.name for f in dataclasses.fields(Dataset)}
    for key, arr in arrays.items():
        if key not in allowed or arr.dtype.type not in _ARRAY_DTYPES:
            raise RunFileError(f"{where}: dataset.safetensors holds unexpected array {key!r} ({arr.dtype}).")
    for split in ("train", "val", "test"):
        if f"X_{split}" not in arrays or f"y_{split}" not in arrays:
            raise RunFileError(f"{where}: dataset.safetensors lacks the {split} split.")
    try:
        array_fields: dict[str, Any] = dict(arrays)
        dataset = Dataset(**_dataset_kwargs(meta), **array_fields)
        ok = (
            dataset.n_features == meta["n_features"]
            and dataset.n_outputs == meta["n_outputs"]
            and dataset.seq_len == meta["seq_len"]
            and all(len(dataset.split(s)[0]) == len(dataset.split(s)[1]) for s in ("train", "val", "test"))
        )
    except (TypeError, ValueError, IndexError) as exc:
        raise RunFileError(f"{where}: dataset.safetensors does not match dataset.json ({exc}).") from None
    if not ok or dataset_fingerprint(dataset) != meta["fingerprint"]:
        raise RunFileError(
            f"{where}: dataset.safetensors does not match the shapes and fingerprint recorded in dataset.json."
        )
    return dataset


def rebuild_dataset(
    config: RunConfig, meta: Mapping[str, Any], csv: bytes | None, csv_path: Path | None, where: str
) -> Dataset:
    """Rebuild with the dataset's loader (from the stored CSV copy for uploaded data) and check it is the same data.

    Used when a run was too large to store its arrays. An uploaded CSV (config has a target but no csv_path) goes
    through ``dataset_from_frame``; a loader reading a CSV file (``csv_path``) is pointed at the run's copy.
    """
    from kamoe_viz import data as data_module

    data_config = dataclasses.replace(config.data, options=dict(config.data.options))
    from_file = bool(data_config.csv_path or data_config.options.get("csv_path"))
    try:
        if csv is not None and data_config.target and not from_file:
            frame = data_module.read_csv_table(csv, max_bytes=len(csv) + 1)
            features = list(data_config.features or meta["feature_names"])
            dataset = data_module.dataset_from_frame(
                frame,
                data_config.target,
                features,
                name=meta["name"],
                seed=data_config.seed,
                test_fraction=data_config.test_fraction,
                val_fraction=data_config.val_fraction,
                task=meta["task"],
            )
        else:
            if from_file and csv_path is None:  # loading never opens a file outside the run's folder
                raise RunFileError(
                    f"{where}: the run's dataset was read from a CSV file that is not stored in the "
                    "run (data.csv is missing); it cannot be rebuilt from the run alone."
                )
            if csv_path is not None and from_file:
                if data_config.csv_path:
                    data_config.csv_path = str(csv_path)
                if "csv_path" in data_config.options:
                    data_config.options["csv_path"] = str(csv_path)
            try:
                dataset = data_module.load_dataset(data_config)
            except (KamoeError, OSError) as exc:  # may name the server's own files (KAMOE_CALIFORNIA_CSV): log it
                _log.warning("%s: dataset %r could not be regenerated: %s", where, config.data.name, exc)
                raise RunFileError(
                    f"{where}: the dataset {config.data.name!r} could not be regenerated on this "
                    "server (the server log has the details)."
                ) from None
    except KamoeError as exc:
        raise RunFileError(f"{where}: the dataset {config.data.name!r} could not be rebuilt: {exc}") from exc
    except OSError as exc:
        raise RunFileError(f"{where}: the dataset {config.data.name!r} could not be rebuilt ({exc}).") from None
    if dataset_fingerprint(dataset) != meta["fingerprint"]:
        raise RunFileError(
            f"{where}: the dataset {config.data.name!r} rebuilt today differs from the data this "
            "run was trained on (fingerprints differ); the saved weights would not match it."
        )
    return dataset


def check_weights(model: KAMoE, members: Mapping[str, bytes], where: str) -> dict[str, Any]:
    """Load weights.safetensors and check every tensor name, shape and dtype against the model's."""
    from safetensors.torch import load as load_torch

    try:
        tensors = load_torch(members["weights.safetensors"])
    except Exception as exc:  # SafetensorError or a malformed header
        raise RunFileError(f"{where}: weights.safetensors cannot be read ({exc}).") from None
    expected = model.state_dict()
    missing = sorted(set(expected) - set(tensors))
    unexpected = sorted(set(tensors) - set(expected))
    if missing or unexpected:
        detail = (f"missing {', '.join(missing[:3])}" if missing else "") + (
            ("; " if missing and unexpected else "") + f"unexpected {', '.join(unexpected[:3])}" if unexpected else ""
        )
        raise RunFileError(f"{where}: weights.safetensors does not fit the model built from config.json ({detail}).")
    for key, tensor in expected.items():
        got = tensors[key]
        if tuple(got.shape) != tuple(tensor.shape) or got.dtype != tensor.dtype:
            raise RunFileError(
                f"{where}: weights.safetensors tensor {key} has shape {tuple(got.shape)} ({got.dtype}) but the model "
                f"built from config.json needs {tuple(tensor.shape)} ({tensor.dtype})."
            )
    return tensors


_NONE = type(None)
_RESULT_FIELDS: dict[str, tuple[type, ...]] = {
    "best_epoch": (int, _NONE),
    "epochs_run": (int, _NONE),
    "params": (int, _NONE),
    "seconds": (int, float, _NONE),
    "stopped_reason": (str, _NONE),
    "message": (str, _NONE),
    "device": (str, _NONE),
}


def decode_result(members: Mapping[str, bytes], where: str) -> TrainResult:
    from kamoe_viz.training import TrainResult

    stored = load_json("metrics.json", members["metrics.json"], where)
    if not isinstance(stored, dict) or not isinstance(stored.get("metrics", {}), dict):
        raise RunFileError(f"{where}: metrics.json must be an object with a 'metrics' table.")
    metrics = {}
    for key, value in stored.get("metrics", {}).items():
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
            raise RunFileError(f"{where}: metrics.json metric {key!r} must be a number, got {value!r}.")
        metrics[key] = float("nan") if value is None else float(value)
    try:
        history = pd.read_csv(io.BytesIO(members["history.csv"]))
    except (ValueError, pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise RunFileError(f"{where}: history.csv cannot be read ({exc}).") from None
    except pd.errors.EmptyDataError:
        history = pd.DataFrame(columns=["epoch", "train_loss", "val_loss", "lr", "seconds"])
    bad = [c for c in history.columns if not pd.api.types.is_numeric_dtype(history[c]) and len(history)]
    if bad or (len(history) and "epoch" not in history.columns):
        raise RunFileError(f"{where}: history.csv needs numeric columns including 'epoch' (bad: {bad[:3]}).")
    for key, value in stored.items():
        if key == "metrics":
            continue
        kinds = _RESULT_FIELDS.get(key, (str, int, float, bool, type(None)))
        if not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds):
            raise RunFileError(f"{where}: metrics.json field {key!r} has the wrong type ({type(value).__name__}).")
    kwargs: dict[str, Any] = {}
    for f in dataclasses.fields(TrainResult):
        if f.name == "history":
            kwargs["history"] = history
        elif f.name == "metrics":
            kwargs["metrics"] = metrics
        elif f.name in stored:
            kwargs[f.name] = stored[f.name]
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            kwargs[f.name] = None
    return TrainResult(**kwargs)


def decode(members: Mapping[str, bytes], where: str, *, run_id: str | None, csv_path: Path | None = None) -> TrainedRun:
    """A TrainedRun from verified members (the manifest's hashes already checked)."""
    import torch

    from kamoe_viz.nn import build_model
    from kamoe_viz.training import TrainedRun
    from kamoe_viz.training.objectives import prepare_model

    config = decode_config(members, where)
    meta = decode_dataset_meta(members, where)
    if "dataset.safetensors" in members:
        dataset = decode_stored_dataset(members, meta, where)
    else:
        dataset = rebuild_dataset(config, meta, members.get("data.csv"), csv_path, where)
    try:
        model = build_model(config.model, dataset)
    except KamoeError as exc:
        raise RunFileError(f"{where}: config.json does not fit the dataset: {exc}") from exc
    tensors = check_weights(model, members, where)
    model.load_state_dict(tensors, strict=True)
    prepare_model(model, config.train)  # mix the weights as the run was trained (the objective decides)
    model.eval()
    try:  # one small forward pass: a run that loads must also predict
        with torch.no_grad():
            out = model(torch.from_numpy(np.ascontiguousarray(dataset.X_test[:4])))
        if out.prediction.shape[0] != min(4, len(dataset.X_test)):
            raise ValueError("wrong number of predictions")
    except (RuntimeError, ValueError, IndexError) as exc:
        raise RunFileError(f"{where}: the rebuilt model cannot predict on the stored data ({exc}).") from None
    result = decode_result(members, where)
    from kamoe_viz.training.timeline import Timeline

    timeline = Timeline.from_members(members, where)  # None for runs saved without one
    return TrainedRun(config=config, dataset=dataset, model=model, result=result, run_id=run_id, timeline=timeline)


def check_importable(members: Mapping[str, bytes], where: str) -> TrainedRun | None:
    """Everything :func:`decode` checks, for a run arriving from outside (no folder yet)."""
    if "dataset.safetensors" not in members:
        # Without stored arrays the weights can still be checked against the dimensions the run records.
        config = decode_config(members, where)
        meta = decode_dataset_meta(members, where)
        from kamoe_viz.nn import build_model

        class _Dims:  # only what build_model reads
            n_features, n_outputs, seq_len = meta["n_features"], meta["n_outputs"], meta["seq_len"]

        try:
            model = build_model(config.model, _Dims())
        except KamoeError as exc:
            raise RunFileError(f"{where}: config.json does not fit the dataset: {exc}") from exc
        check_weights(model, members, where)
        decode_result(members, where)
        return None
    return decode(members, where, run_id=None)
