"""A link value the server cannot honour is named in a warning on the page, never dropped silently (AppTest with
the link's query parameters, then the library check on its own)."""

from __future__ import annotations

import _app_support
import pytest
from _app_support import new_app

from kamoe_viz.config import DEVICES, RunConfig
from kamoe_viz.links import check_link_settings
from kamoe_viz.training.devices import available_devices

MISSING_DEVICES = [d for d in DEVICES if d not in ("auto", *available_devices())]


def _page_warnings(query: dict[str, str]) -> tuple[list[str], dict]:
    at = new_app(query)
    _app_support.no_exception(at, str(query))
    return [w.value for w in at.warning], at.session_state["run_config"]


@pytest.mark.parametrize(
    "query, named, check",
    [
        ({"data.name": "nosuch"}, "data.name='nosuch'", lambda c: c["data"]["name"] == "regimes"),
        ({"data.target": "price"}, "data.target='price'", lambda c: c["data"]["target"] is None),
        (
            {"data.name": "sunspots", "data.options.window": "100000"},
            "data.options.window=100000",
            lambda c: c["data"]["name"] == "sunspots" and c["data"]["options"]["window"] == 12,
        ),
        (
            {"data.name": "sunspots", "data.options.noise": "0.3"},
            "data.options.noise=0.3",
            lambda c: "noise" not in c["data"]["options"],
        ),
    ],
)
def test_a_dropped_link_value_is_named_on_the_page(query, named, check) -> None:
    warnings, config = _page_warnings(query)
    assert any(named in w and "was ignored" in w for w in warnings), warnings
    assert check(config), config


@pytest.mark.skipif(not MISSING_DEVICES, reason="every device a link can name is present here")
def test_a_device_the_server_lacks_is_named_on_the_page() -> None:
    device = MISSING_DEVICES[0]
    warnings, config = _page_warnings({"train.device": device})
    assert any(f"train.device={device!r}" in w and "no " + device in w for w in warnings), warnings
    assert config["train"]["device"] == "auto"


def test_a_valid_link_gives_no_warning() -> None:
    warnings, config = _page_warnings({"data.name": "sunspots", "data.options.window": "20", "train.device": "cpu"})
    assert warnings == [] and config["data"]["options"]["window"] == 20


def test_library_check_names_every_dropped_value() -> None:
    cfg = RunConfig.from_query_params({"data.name": "nosuch", "data.options.window": "5", "train.device": "cuda"})
    fixed, messages = check_link_settings(cfg, ["auto", "cpu"])
    assert (fixed.data.name, fixed.data.options, fixed.train.device) == ("regimes", {}, "auto")
    assert [m.split("=")[0] for m in messages] == [
        "Link parameter data.name",
        "Link parameter data.options.window",
        "Link parameter train.device",
    ]
    same, none = check_link_settings(RunConfig().validate(), ["auto", "cpu"])
    assert none == [] and same.to_dict() == RunConfig().validate().to_dict()
