"""Settings a shared link asks for that this server cannot honour, named instead of dropped silently.

:meth:`RunConfig.from_query_params` checks each value on its own; this module checks them against what the server
has: the dataset must exist, its options must be in range, a target and feature list belong only to an uploaded CSV,
and the device must be present. Each value that cannot be used is replaced by its default and named in one message
(plain text; the app escapes it before rendering). Torch-free: the caller passes the devices it has.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

from kamoe_viz.config import DataConfig, RunConfig, TrainConfig
from kamoe_viz.data.registry import dataset_info, list_datasets, validate_options
from kamoe_viz.errors import ValidationError

UPLOAD_DATASET = "csv"  # DataConfig.name of settings made on an uploaded CSV (the file never travels in a link)


def _ignored(param: str, value: object, why: str, instead: str) -> str:
    return f"Link parameter {param}={value!r} was ignored: {why}; {instead}."


def check_link_settings(config: RunConfig, devices: Sequence[str]) -> tuple[RunConfig, list[str]]:
    """``config`` with every value this server cannot use replaced by its default, and one message per value.

    ``devices``: the device names this server offers (e.g. ``["auto", "cpu"]``)."""
    cfg = copy.deepcopy(config)
    messages: list[str] = []
    data = cfg.data
    default = DataConfig()
    names = [info.name for info in list_datasets()]
    if data.name != UPLOAD_DATASET and data.name not in names:
        messages.append(
            _ignored(
                "data.name",
                data.name,
                f"this server has no such dataset (it has {', '.join(names)})",
                f"{default.name} is used",
            )
        )
        for key, value in data.options.items():
            messages.append(
                _ignored(
                    f"data.options.{key}",
                    value,
                    f"it is an option of the unknown dataset {data.name!r}",
                    "it was dropped with it",
                )
            )
        data.name, data.options = default.name, {}
    if data.name != UPLOAD_DATASET:
        for field in ("target", "features"):
            value = getattr(data, field)
            if value:
                shown = ",".join(value) if field == "features" else value
                messages.append(
                    _ignored(
                        f"data.{field}",
                        shown,
                        f"a {field} is chosen only for an uploaded CSV, and {data.name} has its own",
                        "the dataset's is used",
                    )
                )
                setattr(data, field, None)
        info = dataset_info(data.name)
        options = dict(data.options)
        for _ in range(len(options) + 1):
            try:
                validate_options(info, options)
                break
            except ValidationError as err:
                key = str(err.field).removeprefix("data.options.")
                if key not in options:
                    raise
                spec = info.options.get(key)
                instead = f"the default {spec.default!r} is used" if spec is not None else "it has no effect"
                messages.append(_ignored(f"data.options.{key}", options.pop(key), err.allowed, instead))
        data.options = options
    device = cfg.train.device
    if device not in devices:
        fallback = TrainConfig().device if TrainConfig().device in devices else devices[0]
        messages.append(
            _ignored(
                "train.device",
                device,
                f"this server has no {device} device (it offers {', '.join(devices)})",
                f"{fallback} is used",
            )
        )
        cfg.train.device = fallback
    return cfg, messages


__all__ = ["UPLOAD_DATASET", "check_link_settings"]
