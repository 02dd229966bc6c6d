"""Sweeps through a real private Ray cluster on 127.0.0.1 (2 CPUs): the same table as the local engine, a worker
killed mid-sweep (its task is retried or becomes an error row; the sweep completes), and a driver killed mid-sweep
(no finished row lost, the cluster goes away, the same command resumes)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pandas as pd
import pytest

pytest.importorskip("ray")
psutil = pytest.importorskip("psutil")

from kamoe_viz import compare
from kamoe_viz.config import DataConfig, ModelConfig, RunConfig, TrainConfig

ROOT = Path(__file__).resolve().parents[1]
VOLATILE = ["train_seconds"]  # wall-clock time is the only column allowed to differ between engines


def tiny(epochs: int = 2, n_samples: int = 300) -> RunConfig:
    return RunConfig(
        data=DataConfig(name="regimes", options={"n_samples": n_samples}),
        model=ModelConfig(expert_hidden=(4,), n_experts=2),
        train=TrainConfig(epochs=epochs, batch_size=64, early_stopping=0, device="cpu"),
    ).validate()


def _ray_processes() -> list:
    out = []
    for p in psutil.process_iter(["cmdline"]):
        cmd = " ".join(p.info.get("cmdline") or [])
        if cmd.startswith("ray::") or "/raylet/raylet" in cmd or "gcs_server" in cmd:
            out.append(p)
    return out


def test_ray_engine_writes_the_local_engines_table(tmp_path):
    local = compare.run(tiny(), gates=("linear", "grkan"), seeds=2, include_standard=True)
    ray_res = compare.run(
        tiny(),
        gates=("linear", "grkan"),
        seeds=2,
        include_standard=True,
        jobs=2,
        engine="ray",
        results_path=str(tmp_path / "runs.csv"),
    )
    cols = [c for c in local.table.columns if c not in VOLATILE]
    pd.testing.assert_frame_equal(local.table[cols], ray_res.table[cols])
    assert ray_res.extra["engine"] == "ray"
    written = pd.read_csv(tmp_path / "runs.csv")
    assert len(written) == 6 and written["run_key"].is_unique
    import ray

    assert not ray.is_initialized()  # the private cluster is shut down with the sweep


def test_a_killed_worker_is_retried_or_reported_and_the_sweep_completes(tmp_path):
    killed: list[int] = []
    stop = threading.Event()

    def killer() -> None:  # SIGKILL the first Ray worker seen running a task of this sweep
        while not stop.is_set() and not killed:
            for p in _ray_processes():
                if " ".join(p.info.get("cmdline") or []).startswith("ray::_ray_task"):
                    try:
                        os.kill(p.pid, signal.SIGKILL)
                        killed.append(p.pid)
                    except ProcessLookupError:
                        continue
                    break
            time.sleep(0.05)

    thread = threading.Thread(target=killer, daemon=True)
    thread.start()
    try:
        res = compare.run(
            tiny(epochs=60, n_samples=1000),
            gates=("linear",),
            seeds=2,
            include_standard=True,
            jobs=2,
            engine="ray",
            batch=False,
            results_path=str(tmp_path / "runs.csv"),
        )
    finally:
        stop.set()
        thread.join(5)
    assert killed, "no Ray worker was seen running a task"
    t = res.table
    assert len(t) == 4 and set(t["variant"]) == {"standard", "linear"}
    for _, row in t.iterrows():  # each run either finished (retried on a new worker) or says why it failed
        if row.stopped_reason == "error":
            assert "died" in row.message.lower() or "worker" in row.message.lower(), row.message
        else:
            assert row.epochs_run == 60 and pd.notna(row.test_metric)
    assert len(pd.read_csv(tmp_path / "runs.csv")) == 4


def _compare_cmd(out: Path) -> list[str]:
    return [
        sys.executable,
        "-m",
        "kamoe_viz",
        "compare",
        "--engine",
        "ray",
        "--jobs",
        "2",
        "--no-batch",
        "--gates",
        "linear,grn",
        "--seeds",
        "2",
        "--epochs",
        "120",
        "--patience",
        "0",
        "--hidden",
        "4",
        "--experts",
        "2",
        "--option",
        "n_samples=1000",
        "--out",
        str(out),
    ]


def test_killing_the_driver_loses_no_finished_row_and_the_same_command_resumes(tmp_path):
    out = tmp_path / "runs.csv"
    env = {**os.environ, "KAMOE_THREADS": "1"}
    proc = subprocess.Popen(_compare_cmd(out), cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    cluster: list = []
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and proc.poll() is None:
            if out.exists() and len(pd.read_csv(out)) >= 1:
                break
            time.sleep(0.2)
        assert proc.poll() is None, "the sweep ended before it could be killed"
        cluster = list(psutil.Process(proc.pid).children(recursive=True))
        first = pd.read_csv(out)
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert 1 <= len(first) < 6 and first["run_key"].is_unique
    survivors = cluster
    deadline = time.monotonic() + 90  # the private cluster notices its driver is gone and stops
    while survivors and time.monotonic() < deadline:
        time.sleep(1)
        survivors = [p for p in survivors if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
    assert not survivors, f"Ray processes outlived their driver: {[p.pid for p in survivors]}"
    again = subprocess.run(_compare_cmd(out), cwd=ROOT, env=env, capture_output=True, text=True, timeout=400)
    assert again.returncode == 0, again.stderr[-2000:]
    assert f"run(s) already in {out}; skipped" in again.stderr
    final = pd.read_csv(out)
    assert len(final) == 6 and final["run_key"].is_unique
    kept = final.set_index("run_key").loc[first["run_key"], "test_metric"].to_numpy()
    assert (kept == first["test_metric"].to_numpy()).all()  # finished rows were taken over, not trained again
