"""The Train page's settings <-> RunConfig <-> URL query parameters.

The session keeps one master copy of the settings (``session_state["run_config"]``, a RunConfig dict). Widgets are
seeded from it (Streamlit forgets widget values when the user visits another page), edits flow back into it, and
the whole configuration is mirrored into ``st.query_params`` so the browser's URL is a shareable link.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import urlencode

import streamlit as st

from kamoe_viz.config import RunConfig
from kamoe_viz.errors import KamoeError, ValidationError
from kamoe_viz_app.safe import esc

MASTER = "run_config"
LINK_LOADED = "_link_loaded"
LINK_WARNINGS = "_link_warnings"
PREFIX = "w."  # widget keys: "w.model.gate", "w.data.options.regimes.noise", ...
PRESENT = "present"  # link parameter of presentation mode (?present=1): not a setting, kept beside them
# a link whose settings are all the library's defaults (RunConfig()) says so, since an address with no settings at
# all opens the app's opening preset (kamoe_viz.presets.OPENING_PRESET)
DEFAULTS = "defaults"


def presenting() -> bool:
    """Presentation mode: the link has ``present=1`` (only data, transport controls and live views show)."""
    return str(st.query_params.get(PRESENT, "")).lower() in ("1", "true", "yes")


def config_from_link(params: Mapping[str, str]) -> tuple[RunConfig, list[str]]:
    """Parse link parameters; a bad parameter is dropped with a warning that names it, the rest are kept. Values
    this server cannot honour (an unknown dataset, an option out of range, a device it lacks...) are named too
    (:func:`kamoe_viz.links.check_link_settings`)."""
    from kamoe_viz.links import check_link_settings
    from kamoe_viz.training.devices import available_devices

    config, warnings = _parse_link(params)
    config, dropped = check_link_settings(config, ["auto", *available_devices()])
    return config, warnings + [esc(m) for m in dropped]  # the messages quote a visitor's text


def _parse_link(params: Mapping[str, str]) -> tuple[RunConfig, list[str]]:
    remaining = {str(k): str(v) for k, v in params.items() if str(k) not in (PRESENT, DEFAULTS)}
    warnings: list[str] = []
    for _ in range(len(remaining) + 1):
        try:
            return RunConfig.from_query_params(remaining), warnings
        except ValidationError as err:
            culprit = _param_for_error(err, remaining)
            if culprit is None:
                warnings.append(f"{esc(err)} The link's settings were ignored; the defaults are used.")
                return RunConfig().validate(), warnings
            warnings.append(f"Link parameter {esc(culprit)} was ignored: {esc(err)}")  # a visitor's text
            remaining.pop(culprit)
        except (KamoeError, TypeError, ValueError) as err:  # anything else odd in a link: defaults, with a message
            warnings.append(f"The link's settings could not be read ({esc(err)}); the defaults are used.")
            return RunConfig().validate(), warnings
    return RunConfig().validate(), warnings


def _param_for_error(err: ValidationError, params: Mapping[str, str]) -> str | None:
    field = str(err.field)
    if field.startswith("link parameter "):
        field = field[len("link parameter ") :]
    if field in params:
        return field
    # errors about an option name ("data.options.noise") or a section ("model") map to the parameters under it
    matches = [k for k in params if k.startswith(field + ".")]
    return matches[0] if len(matches) == 1 else None


def link_query(config: RunConfig) -> str:
    """The query string of a link that restores ``config``."""
    return urlencode(_link_params(config))


def _link_params(config: RunConfig) -> dict[str, str]:
    return config.to_query_params() or {DEFAULTS: "1"}


def master() -> RunConfig:
    """The session's current settings (validated); the link's on the first visit of the session."""
    if not st.session_state.get(LINK_LOADED):
        from kamoe_viz.presets import opening_config

        params = st.query_params.to_dict()
        settings = {k: v for k, v in params.items() if k != PRESENT}
        # no settings in the address: the opening preset, so the first click shows experts specialising (the
        # library's defaults are the paper's reference model, which does not)
        config, warnings = config_from_link(params) if settings else (opening_config(), [])
        st.session_state[MASTER] = config.to_dict()
        st.session_state[LINK_WARNINGS] = warnings
        st.session_state[LINK_LOADED] = True
    raw = st.session_state.get(MASTER)
    try:
        return RunConfig.from_dict(raw) if raw else RunConfig().validate()
    except KamoeError:
        return RunConfig().validate()


def set_master(config: RunConfig | dict[str, Any], reseed: bool = False) -> None:
    """Store settings; ``reseed`` also overwrites the widgets (presets, reloading a run's settings)."""
    raw = config.to_dict() if isinstance(config, RunConfig) else config
    st.session_state[MASTER] = raw
    if reseed:
        for key in [k for k in st.session_state if str(k).startswith(PREFIX)]:
            del st.session_state[key]


def sync_link(config: RunConfig) -> None:
    """Mirror ``config`` into the browser URL (only when it changed, to avoid needless reruns)."""
    params = _link_params(config)
    if presenting():
        params[PRESENT] = "1"
    if st.query_params.to_dict() != params:
        st.query_params.from_dict(params)


def pop_link_warnings() -> list[str]:
    return st.session_state.pop(LINK_WARNINGS, []) or []


def widget_key(path: str) -> str:
    return PREFIX + path


def seed(path: str, value: Any) -> str:
    """Give the widget at ``path`` its value from the master settings if Streamlit has none; return its key."""
    key = widget_key(path)
    if key not in st.session_state:
        st.session_state[key] = value
    return key
