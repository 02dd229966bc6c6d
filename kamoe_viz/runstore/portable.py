"""A run file is data, never a pointer: the checks that keep an exported or uploaded run from naming a server file.

An exported run's config.json loses its file paths (its data travels inside the run), and an arriving run must
carry its dataset or name a built-in one, and name no file, before anything is built from it.
"""

from __future__ import annotations

from collections.abc import Mapping

from kamoe_viz.config import RunConfig
from kamoe_viz.errors import RunFileError
from kamoe_viz.runstore.codec import decode_config
from kamoe_viz.runstore.fileformat import dump_json, load_json


def file_paths(config: RunConfig) -> list[str]:
    """The settings of ``config`` that name a file (``data.csv_path``, a dataset option such as ``csv_path``)."""
    found = ["data.csv_path"] if config.data.csv_path else []
    found += [
        f"data.options.{key}"
        for key, value in sorted(config.data.options.items())
        if "path" in str(key).lower() and value
    ]
    return found


def without_paths(config_json: bytes, where: str) -> bytes:
    """config.json with every file path removed: what an exported run carries (its data travels inside it)."""
    raw = load_json("config.json", config_json, where)
    data = raw.get("data") if isinstance(raw, dict) else None
    if not isinstance(data, dict):
        return config_json
    data["csv_path"] = None
    if isinstance(data.get("options"), dict):
        data["options"] = {k: v for k, v in data["options"].items() if "path" not in str(k).lower()}
    return dump_json(raw)


def check_self_contained(members: Mapping[str, bytes], where: str) -> None:
    """An arriving run must carry its dataset (or name a built-in one that regenerates it) and name no file.

    Refused before anything is built, so an uploaded run can never make the server open one of its own files; the
    message names the setting, never the path or anything read from it.
    """
    from kamoe_viz.data import list_datasets

    config = decode_config(members, where)
    paths = file_paths(config)
    if paths:
        raise RunFileError(
            f"{where}: config.json names a file ({', '.join(paths)}); a run file carries its data "
            "and never points at a file on the server. Export the run again from the Runs page "
            "(exported runs carry their data and no file paths)."
        )
    built_in = {info.name for info in list_datasets()}
    if "dataset.safetensors" not in members and "data.csv" not in members and config.data.name not in built_in:
        raise RunFileError(
            f"{where}: the run carries no dataset (neither dataset.safetensors nor data.csv) and "
            f"{config.data.name!r} is not a built-in dataset that could regenerate it."
        )
