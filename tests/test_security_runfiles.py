"""A run file is data, never a pointer: an imported or stored run never makes the server open one of its files.

An audit hook records every file the process opens while a test imports or loads a run; a server file planted
outside the runs folder must never appear there, and no message may quote its name or content.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_runs import make_run
from test_runs_files import members_of, rezip

from kamoe_viz.config import DataConfig
from kamoe_viz.data import load_dataset
from kamoe_viz.errors import KamoeError, RunFileError
from kamoe_viz.runstore import RunStore

_OPENED: list[str] | None = None


def _audit(event: str, args: tuple) -> None:
    if event == "open" and _OPENED is not None and args and isinstance(args[0], (str, bytes, Path)):
        _OPENED.append(str(args[0]))


sys.addaudithook(_audit)  # cannot be removed; it records only while _OPENED is a list


class Watch:
    """Collect the paths opened inside the ``with`` block."""

    def __enter__(self) -> list[str]:
        global _OPENED
        _OPENED = []
        return _OPENED

    def __exit__(self, *exc: object) -> None:
        global _OPENED
        _OPENED = None


@pytest.fixture()
def secret(tmp_path: Path) -> Path:
    """A server file a visitor must never reach: its column names and a cell would leak in a message."""
    folder = tmp_path / "server_private"
    folder.mkdir()
    path = folder / "passwords.csv"
    path.write_text("SECRETCOLUMN,OTHERSECRET\nhunter2value,1\n" * 3)
    return path


def pointing_at(blob: bytes, path: Path, *, option: bool = False) -> bytes:
    """The run file with its dataset members removed and config.json pointing at ``path`` (hashes recomputed)."""

    def change(plain: dict[str, bytes]) -> None:
        plain.pop("dataset.safetensors", None)
        plain.pop("data.csv", None)
        config = json.loads(plain["config.json"])
        if option:
            config["data"].update(name="california", options={"csv_path": str(path)})
        else:
            config["data"].update(name="csv", csv_path=str(path), target="price", options={})
        plain["config.json"] = json.dumps(config).encode()

    return rezip(blob, change)


def assert_not_leaked(text: str, secret: Path) -> None:
    for needle in ("SECRETCOLUMN", "OTHERSECRET", "hunter2", str(secret), "server_private"):
        assert needle not in text, f"message leaks {needle!r}: {text}"


@pytest.fixture()
def blob(tmp_path: Path) -> bytes:
    store = RunStore(tmp_path / "source")
    return store.export_bytes(store.save(make_run()))


@pytest.mark.parametrize("option", [False, True], ids=["data.csv_path", "california csv_path option"])
def test_import_refuses_a_run_that_points_at_a_server_file(
    tmp_path: Path, blob: bytes, secret: Path, option: bool
) -> None:
    store = RunStore(tmp_path / "runs")
    with Watch() as opened, pytest.raises(RunFileError, match="names a file") as info:
        store.import_bytes(pointing_at(blob, secret, option=option), "shared.zip")
    assert_not_leaked(str(info.value), secret)
    assert not any("server_private" in p for p in opened)
    assert store.run_ids() == []


def test_a_stored_run_pointing_outside_is_not_opened(tmp_path: Path, blob: bytes, secret: Path) -> None:
    """Even a run already in the folder (written by an older version, or by hand) never reads outside it."""
    store = RunStore(tmp_path / "runs")
    plain = {name.split("/", 1)[1]: data for name, data in members_of(pointing_at(blob, secret)).items()}
    plain.pop("format.json")
    run_id = store._commit(plain, {"name": "planted", "notes": "", "created": "2025-01-01T00:00:00+00:00"}, None)
    with Watch() as opened, pytest.raises(RunFileError) as info:
        store.load(run_id)
    assert_not_leaked(str(info.value), secret)
    assert not any("server_private" in p for p in opened)


def test_an_exported_csv_run_carries_its_data_and_no_path(tmp_path: Path) -> None:
    csv = tmp_path / "mine.csv"
    csv.write_text("a,b,price\n" + "".join(f"{i % 7},{i % 5},{i * 0.5}\n" for i in range(60)))
    run = make_run()
    run.config.data = DataConfig(name="csv", csv_path=str(csv), target="price")
    run.dataset = load_dataset(run.config.data)
    from kamoe_viz.nn import build_model

    run.model = build_model(run.config.model, run.dataset).eval()
    source = RunStore(tmp_path / "source")
    exported = source.export_bytes(source.save(run))
    config = json.loads(next(v for k, v in members_of(exported).items() if k.endswith("config.json")))
    assert config["data"]["csv_path"] is None
    assert str(csv) not in exported.decode("latin-1")
    target = RunStore(tmp_path / "target")
    loaded = target.load(target.import_bytes(exported, "mine.zip"))
    assert loaded.dataset.n_features == 2


# ----- fuzz: generated data sections of an imported config ------------------------------------------------------------
PATHISH = st.sampled_from(["SECRET", "/etc/passwd", "", "data.csv", "../x.csv", None])
NAMES = st.sampled_from(["regimes", "csv", "california", "xor", "diabetes", "nope"]) | st.text(max_size=8)
OPTION_KEYS = st.sampled_from(["csv_path", "path", "noise", "n_samples", "window", "target", "data_path"])
VALUES = st.none() | st.booleans() | st.integers(-5, 10**6) | st.floats(allow_nan=False, width=32) | PATHISH


@settings(
    max_examples=60,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    name=NAMES,
    csv_path=PATHISH,
    target=st.none() | st.sampled_from(["price", "SECRETCOLUMN", "y"]),
    options=st.dictionaries(OPTION_KEYS, VALUES, max_size=3),
    keep=st.sampled_from(["none", "arrays", "csv"]),
)
def test_fuzzed_data_sections_never_open_a_server_file(
    tmp_path_factory: pytest.TempPathFactory,
    blob: bytes,
    secret: Path,
    monkeypatch: pytest.MonkeyPatch,
    name: str,
    csv_path: str | None,
    target: str | None,
    options: dict,
    keep: str,
) -> None:
    monkeypatch.setenv("KAMOE_CALIFORNIA_CSV", str(secret.parent / "california_absent.csv"))  # no download
    store = RunStore(tmp_path_factory.mktemp("fuzz_runs"))

    def fill(value: object) -> object:
        return str(secret) if value == "SECRET" else value

    def change(plain: dict[str, bytes]) -> None:
        if keep != "arrays":
            plain.pop("dataset.safetensors", None)
        if keep == "csv":
            plain["data.csv"] = b"a,price\n1,2\n3,4\n"
        config = json.loads(plain["config.json"])
        config["data"].update(
            name=name, csv_path=fill(csv_path), target=target, options={k: fill(v) for k, v in options.items()}
        )
        plain["config.json"] = json.dumps(config).encode()

    with Watch() as opened:
        try:
            run_id = store.import_bytes(rezip(blob, change), "fuzzed.zip")
            store.load(run_id)
        except KamoeError as err:
            assert_not_leaked(str(err), secret)
    assert not any("server_private" in p for p in opened), opened
