"""The Train page's data choice: a built-in dataset with its options, or an uploaded CSV; and the dataset card."""

from __future__ import annotations

import hashlib
from typing import Any

import streamlit as st

from kamoe_viz.charts import training as ct
from kamoe_viz.config import DataConfig, RunConfig
from kamoe_viz.data.base import Dataset
from kamoe_viz.errors import KamoeError
from kamoe_viz_app.config_state import seed
from kamoe_viz_app.lock import off, why
from kamoe_viz_app.safe import esc

UPLOAD_NAME = "csv"  # DataConfig.name of a run on an uploaded CSV (the file itself never goes into a link)
SOURCE_BUILTIN = "Built-in dataset"
UPLOAD_BYTES = "_upload_bytes"  # raw bytes of the CSV behind the current upload dataset
UPLOAD_WIDGET = "upload_csv"  # the file uploader's key: its value is the uploaded file, or None
SOURCE_UPLOAD = "Upload a CSV"


def dataset_infos() -> list[Any]:
    from kamoe_viz.data import list_datasets

    return list(list_datasets())


@st.cache_data(max_entries=12, show_spinner="Loading the dataset…")
def load_builtin(data_json: str) -> Any:
    """Load a built-in dataset once per distinct data settings (shared by sessions: data only, never models)."""
    import json

    from kamoe_viz.data import load_dataset

    return load_dataset(DataConfig(**_data_kwargs(json.loads(data_json))).validate())


def _data_kwargs(raw: dict[str, Any]) -> dict[str, Any]:
    kwargs = dict(raw)
    if isinstance(kwargs.get("features"), list):
        kwargs["features"] = tuple(kwargs["features"])
    return kwargs


@st.cache_data(max_entries=4, show_spinner="Reading the CSV…")
def read_upload(data: bytes, max_bytes: int) -> Any:
    from kamoe_viz.data import read_csv_table

    return read_csv_table(data, max_bytes=max_bytes)


@st.cache_data(max_entries=8, show_spinner="Preparing the dataset…")
def dataset_from_upload(
    digest: str,
    _frame: Any,
    target: str,
    features: tuple[str, ...],
    name: str,
    seed_: int,
    test_fraction: float,
    val_fraction: float,
    task: str | None,
) -> Any:
    from kamoe_viz.data import dataset_from_frame

    return dataset_from_frame(
        _frame,
        target,
        list(features),
        name=name,
        seed=seed_,
        test_fraction=test_fraction,
        val_fraction=val_fraction,
        task=task,
    )


def _option_widget(dataset: str, spec: Any, current: Any, disabled: bool) -> Any:
    """One widget for a dataset option (kamoe_viz.data.OptionSpec: type int|float|choice|str, bounds, help)."""
    value = current if current is not None else spec.default
    key = seed(f"data.options.{dataset}.{spec.name}", value)
    label = spec.label or spec.name
    if spec.type == "choice":
        choices = list(spec.choices or [])
        if st.session_state[key] not in choices:
            st.session_state[key] = spec.default if spec.default in choices else choices[0]
        return st.selectbox(label, choices, key=key, help=why(disabled) or (spec.help or None), disabled=off(disabled))
    if spec.type in ("int", "float"):
        cast = int if spec.type == "int" else float
        try:
            number = cast(st.session_state[key])
        except (TypeError, ValueError):
            number = cast(spec.default)
        low = None if spec.min is None else cast(spec.min)
        high = None if spec.max is None else cast(spec.max)
        if low is not None and high is not None:
            number = min(max(number, low), high)
        st.session_state[key] = number
        step = cast(spec.step) if spec.step else (1 if spec.type == "int" else 0.05)
        # low, high and step are all int or all float (spec.type), which number_input's overloads cannot see
        return st.number_input(  # type: ignore[call-overload]
            label,
            low,
            high,
            step=step,
            key=key,
            help=why(disabled) or (spec.help or None),
            disabled=off(disabled),
            **({} if spec.type == "int" else {"format": "%g"}),
        )
    text = st.text_input(label, key=key, help=why(disabled) or (spec.help or None), disabled=off(disabled))
    return text or None


def builtin_section(base: RunConfig, disabled: bool) -> tuple[dict[str, Any], Any, str | None]:
    """Dataset selectbox + its options. Returns (data section, Dataset or None, error message or None)."""
    infos = {info.name: info for info in dataset_infos()}
    names = list(infos)
    name = base.data.name if base.data.name in infos else (names[0] if names else base.data.name)
    name = st.selectbox(
        "Dataset",
        names,
        key=seed("data.name", name),
        disabled=off(disabled),
        help=why(disabled),
        format_func=lambda n: f"{getattr(infos[n], 'title', n)}  ({n})",
    )
    info = infos[name]
    st.caption(getattr(info, "description", ""))
    if getattr(info, "needs_download", False):
        st.caption(
            ":material/cloud_download: Downloaded once on first use, then cached (or read from a local CSV "
            "named by env KAMOE_CALIFORNIA_CSV)."
        )
    specs = [o for o in info.option_specs if o.name != "csv_path"]  # server paths never come from the page
    chosen = base.data.options if base.data.name == name else {}
    options: dict[str, Any] = {}
    with st.expander("Dataset options and split", expanded=False):
        for spec in specs:
            options[spec.name] = _option_widget(name, spec, chosen.get(spec.name), disabled)
        split = split_settings(base, disabled)
    data = RunConfig(data=base.data).to_dict()["data"]
    data.update(name=name, options=options, csv_path=None, target=None, features=None, **split)
    try:
        return data, load_builtin(_json(data)), None
    except KamoeError as err:
        return data, None, str(err)
    except Exception as err:  # a loader problem must not take the page down
        return data, None, f"data.name: {name!r} could not be loaded ({type(err).__name__}: {err})."


def split_settings(base: RunConfig, disabled: bool) -> dict[str, Any]:
    """Data seed (generation and split) and the test / validation fractions."""
    d = base.data
    c1, c2, c3 = st.columns(3)
    return {
        "seed": c1.number_input(
            "Data seed",
            0,
            2**31 - 1,
            step=1,
            disabled=off(disabled),
            key=seed("data.seed", d.seed),
            help=why(disabled) or ("Seeds the generated data and the random split (training has its own seed)."),
        ),
        "test_fraction": c2.number_input(
            "Test share",
            0.05,
            0.5,
            step=0.05,
            format="%g",
            disabled=off(disabled),
            help=why(disabled),
            key=seed("data.test_fraction", float(d.test_fraction)),
        ),
        "val_fraction": c3.number_input(
            "Validation share",
            0.05,
            0.5,
            step=0.05,
            format="%g",
            disabled=off(disabled),
            key=seed("data.val_fraction", float(d.val_fraction)),
            help=why(disabled) or ("Share of what remains after the test split."),
        ),
    }


def _json(data: dict[str, Any]) -> str:
    import json

    return json.dumps(data, sort_keys=True, default=list)


def upload_section(base: RunConfig, disabled: bool) -> tuple[dict[str, Any], Any, str | None]:
    """CSV upload, target and feature choice. Returns (data section, Dataset or None, error message or None)."""
    limit_mb = int(st.get_option("server.maxUploadSize"))
    data = RunConfig().to_dict()["data"]
    with st.expander("Split", expanded=False):
        split = split_settings(base, disabled)
    data.update(name=UPLOAD_NAME, **split)
    upload = st.file_uploader(
        f"CSV file (up to {limit_mb} MB)",
        type=["csv", "txt"],
        key=UPLOAD_WIDGET,
        disabled=off(disabled),
        help=why(disabled)
        or (
            "One row per example, a header row with column names; numeric features. "
            "Nothing is trained until the file passes the checks."
        ),
    )
    if upload is None:
        return data, None, "Upload a CSV file to train on your own data."
    raw = upload.getvalue()
    try:
        frame = read_upload(raw, limit_mb * 1024 * 1024)
    except KamoeError as err:
        return data, None, str(err)
    except Exception as err:
        return data, None, f"upload: {upload.name!r} could not be read as CSV ({type(err).__name__}: {err})."
    columns = [str(c) for c in frame.columns]
    target = st.selectbox(
        "Target column",
        columns,
        index=len(columns) - 1,
        key=f"upload_target_{upload.file_id}",
        disabled=off(disabled),
        help=why(disabled),
    )
    others = [c for c in columns if c != target]
    features = st.multiselect(
        "Feature columns",
        others,
        default=others,
        key=f"upload_features_{upload.file_id}",
        disabled=off(disabled),
        help=why(disabled),
    )
    task = (
        st.segmented_control(
            "Task",
            ["auto", "regression", "classification"],
            default="auto",
            key=f"upload_task_{upload.file_id}",
            disabled=off(disabled),
            help=why(disabled),
        )
        or "auto"
    )
    data.update(target=target, features=list(features))
    digest = hashlib.sha1(raw).hexdigest()
    try:
        dataset = dataset_from_upload(
            digest,
            frame,
            target,
            tuple(features),
            _safe_name(upload.name),
            int(split["seed"]),
            float(split["test_fraction"]),
            float(split["val_fraction"]),
            None if task == "auto" else task,
        )
    except KamoeError as err:
        return data, None, str(err)
    except Exception as err:
        return data, None, f"upload: the CSV could not be turned into a dataset ({type(err).__name__}: {err})."
    st.session_state[UPLOAD_BYTES] = raw
    return data, dataset, None


def _safe_name(filename: str) -> str:
    stem = filename.rsplit("/", 1)[-1].rsplit("\\", 1)[-1].rsplit(".", 1)[0]
    cleaned = "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in stem)[:40].strip("_")
    return cleaned or "upload"


def dataset_card(dataset: Dataset) -> None:
    """Size, task, source, and a preview table or (2-D inputs) a scatter of the training inputs."""
    sizes = dataset.sizes()
    cols = st.columns(3)
    cols[0].metric("Training rows", f"{sizes['train']:,}")
    cols[1].metric("Validation / test", f"{sizes['val']:,} / {sizes['test']:,}")
    cols[2].metric("Features", f"{dataset.n_features}" + (f" × {dataset.seq_len} steps" if dataset.is_sequence else ""))
    task = dataset.task + (f" with {len(dataset.class_names)} classes" if dataset.class_names else "")
    target = f"target {esc(dataset.target_name)}"
    regimes = f", {len(dataset.regime_names)} known regimes" if dataset.regime_names else ""
    st.caption(
        f"{task.capitalize()}, {target}{regimes}. Inputs are standardised on the training split; the "
        "preview shows original units."
    )
    X = dataset.unscale_X(dataset.X_train[:600])
    y = dataset.unscale_y(dataset.y_train[:600])
    frame = ct.preview_frame(
        X,
        y,
        dataset.feature_names,
        dataset.target_name,
        dataset.class_names,
        dataset.regimes_train[:600] if dataset.regimes_train is not None else None,
        dataset.regime_names,
        limit=600,
    )
    if dataset.is_2d:
        a, b = dataset.feature_names
        nominal = dataset.class_names is not None
        color = dataset.target_name if (nominal or "regime" not in frame) else "regime"
        if "regime" in frame and not nominal:
            color = "regime"
            nominal = True
        tab_plot, tab_table = st.tabs(["Scatter", "Table"])
        tab_plot.altair_chart(
            ct.scatter_2d_chart(frame, a, b, color, nominal), width="stretch", height=ct.chart_height("scatter")
        )
        tab_table.dataframe(frame.head(200), height=280, width="stretch")
    else:
        st.dataframe(frame.head(200), height=280, width="stretch")
    if getattr(dataset, "source", ""):
        st.caption(f"Source: {esc(dataset.source)}")
