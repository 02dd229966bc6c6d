"""Hostile run files, generated: random byte damage and forged members with valid hashes.

Whatever arrives, import_bytes either refuses it with RunFileError and writes nothing, or accepts a run that then
loads and predicts exactly like the original. No other exception type may escape.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_runs import entries, make_run, predictions
from test_runs_files import rezip

from kamoe_viz.errors import RunFileError
from kamoe_viz.runstore import RunStore

FUZZ = settings(
    max_examples=100,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


class Original(tuple):
    """(exported bytes, expected predictions), with a short repr so failing examples stay readable."""

    def __repr__(self) -> str:
        return f"<run file of {len(self[0])} bytes>"


@pytest.fixture(scope="module")
def original(tmp_path_factory: pytest.TempPathFactory) -> Original:
    store = RunStore(tmp_path_factory.mktemp("fuzz_source"))
    run = make_run()
    run_id = store.save(run)
    return Original((store.export_bytes(run_id), predictions(run)))


@pytest.fixture(scope="module")
def target(tmp_path_factory: pytest.TempPathFactory) -> RunStore:
    return RunStore(tmp_path_factory.mktemp("fuzz_target"))


def import_or_refuse(store: RunStore, data: bytes, expected: np.ndarray) -> str:
    before = entries(store.root)
    try:
        run_id = store.import_bytes(data, "fuzzed.zip")
    except RunFileError as err:
        assert str(err).startswith("fuzzed.zip")
        assert entries(store.root) == before
        return "refused"
    np.testing.assert_array_equal(predictions(store.load(run_id)), expected)
    store.delete(run_id)
    return "accepted"


@FUZZ
@given(data=st.data())
def test_random_byte_damage(original: tuple[bytes, np.ndarray], target: RunStore, data: st.DataObject) -> None:
    blob, expected = original
    damaged = bytearray(blob)
    kind = data.draw(st.sampled_from(["flip", "truncate", "insert", "overwrite"]))
    where = data.draw(st.integers(0, len(blob) - 1))
    if kind == "flip":
        damaged[where] ^= data.draw(st.integers(1, 255))
    elif kind == "truncate":
        del damaged[where:]
    elif kind == "insert":
        damaged[where:where] = data.draw(st.binary(min_size=1, max_size=64))
    else:
        chunk = data.draw(st.binary(min_size=1, max_size=64))
        damaged[where : where + len(chunk)] = chunk
    import_or_refuse(target, bytes(damaged), expected)


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-(10**12), 10**12) | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=8,
)
FORGEABLE = {"config.json": ["data", "model", "train"], "dataset.json": None, "metrics.json": None}


@FUZZ
@given(member=st.sampled_from(sorted(FORGEABLE)), data=st.data(), value=JSON_VALUES)
def test_forged_json_members_with_valid_hashes(
    original: tuple[bytes, np.ndarray], target: RunStore, member: str, data: st.DataObject, value: object
) -> None:
    """A forger who recomputes the hashes: every JSON field replaced by an arbitrary JSON value."""
    blob, expected = original

    def forge(plain: dict[str, bytes]) -> None:
        doc = json.loads(plain[member])
        sections = FORGEABLE[member]
        holder = doc[data.draw(st.sampled_from(sections))] if sections else doc
        key = data.draw(st.sampled_from(sorted(holder)))
        holder[key] = value
        plain[member] = json.dumps(doc).encode()

    import_or_refuse(target, rezip(blob, forge), expected)


@FUZZ
@given(
    member=st.sampled_from(["history.csv", "weights.safetensors", "dataset.safetensors", "format.json"]),
    content=st.binary(max_size=300),
)
def test_forged_binary_members_with_valid_hashes(
    original: tuple[bytes, np.ndarray], target: RunStore, member: str, content: bytes
) -> None:
    blob, expected = original
    import_or_refuse(target, rezip(blob, lambda plain: plain.update({member: content})), expected)


def test_fuzz_store_is_left_clean(target: RunStore) -> None:
    assert target.list_runs().empty and entries(target.root) == []
