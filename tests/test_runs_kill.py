"""Kill a save with SIGKILL and check that no run is lost, none is half-written, and the leftovers are cleaned up.

A child process saves runs; the parent kills it (1) while it sits paused right after writing a chosen member, and
(2) at random moments of a tight loop of saves. Afterwards every run the child finished is listed without error and
loads, the earlier run still predicts as before, and the next RunStore opened removes the dead save's temp folder.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from test_runs import make_run, predictions

from kamoe_viz.runstore import RunStore

pytestmark = pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs POSIX signals")

CHILD = r"""
import sys, time
sys.path.insert(0, sys.argv[3])
from test_runs import make_run
from kamoe_viz.runstore import RunStore
from kamoe_viz.runstore import store as store_module

mode, root = sys.argv[1], sys.argv[2]
store = RunStore(root)
if mode == "loop":
    run = make_run(expert="mlp", hidden=(128, 128), n_experts=6)
    print("READY", flush=True)
    while True:
        print("SAVED", store.save(run), flush=True)
else:
    run = make_run(seed=2)
    def pause_after(member):
        if member == mode:
            print("PAUSED", flush=True)
            time.sleep(120)
    store_module._write_hook = pause_after
    store.save(run)
    print("SAVED", flush=True)
"""


def start_child(mode: str, root: Path) -> subprocess.Popen:
    tests_dir = str(Path(__file__).parent)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(Path(tests_dir).parent), os.environ.get("PYTHONPATH", "")]))
    return subprocess.Popen(
        [sys.executable, "-c", CHILD, mode, str(root), tests_dir],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


def wait_for(child: subprocess.Popen, word: str) -> list[str]:
    lines = []
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        line = child.stdout.readline()
        if not line:
            child.kill()
            raise AssertionError(f"child ended before {word}: {child.stderr.read()[-2000:]}")
        lines.append(line.strip())
        if line.startswith(word):
            return lines
    child.kill()
    raise AssertionError(f"child did not reach {word} in time")


def kill(child: subprocess.Popen) -> list[str]:
    os.kill(child.pid, signal.SIGKILL)
    rest, _ = child.communicate(timeout=30)
    assert child.returncode == -signal.SIGKILL
    return rest.splitlines()


@pytest.mark.parametrize("member", ["config.json", "history.csv", "format.json"])
def test_kill_while_paused_mid_save(tmp_path: Path, member: str) -> None:
    store = RunStore(tmp_path)
    earlier = make_run()
    earlier_id = store.save(earlier, name="earlier")
    child = start_child(member, tmp_path)
    wait_for(child, "PAUSED")
    kill(child)
    leftovers = [p.name for p in tmp_path.iterdir() if p.name.startswith(".tmp-")]
    assert leftovers == [f".tmp-{child.pid}-" + leftovers[0].split("-")[-1]]  # the half-written save, hidden
    table = store.list_runs()
    assert list(table["run_id"]) == [earlier_id] and table["error"].isna().all()
    np.testing.assert_array_equal(predictions(store.load(earlier_id)), predictions(earlier))
    RunStore(tmp_path)  # the next open removes the dead save's folder
    assert sorted(p.name for p in tmp_path.iterdir()) == [earlier_id]


def test_kill_at_random_moments_of_a_save_loop(tmp_path: Path) -> None:
    """Fault injection without hooks: the kill lands wherever the child happens to be."""
    store = RunStore(tmp_path)
    earlier = make_run()
    earlier_id = store.save(earlier)
    rng = random.Random(7)
    finished: set[str] = set()
    for _ in range(3):
        child = start_child("loop", tmp_path)
        wait_for(child, "READY")
        time.sleep(rng.uniform(0.05, 0.4))
        lines = kill(child)
        finished |= {line.split()[1] for line in lines if line.startswith("SAVED")}
        table = store.list_runs()
        assert table["error"].isna().all(), table["error"].dropna().tolist()
        listed = set(table["run_id"])
        # every save the child reported is there; at most one more (renamed into place just before the kill)
        assert finished | {earlier_id} <= listed and len(listed - finished - {earlier_id}) <= 1
        finished = listed - {earlier_id}
    for run_id in sorted(finished)[-2:]:
        assert store.load(run_id).run_id == run_id
    np.testing.assert_array_equal(predictions(store.load(earlier_id)), predictions(earlier))
    RunStore(tmp_path)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]
