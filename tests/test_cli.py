"""Command line: train (text, --json, --csv, --save, divergence), datasets, and one-line errors with exit status 2."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch

torch.set_num_threads(1)

from kamoe_viz.cli import main
from kamoe_viz.cli.train import ProgressBar

ROOT = Path(__file__).resolve().parents[1]
TINY = [
    "--option",
    "n_samples=300",
    "--hidden",
    "8",
    "--experts",
    "2",
    "--batch-size",
    "64",
    "--device",
    "cpu",
    "--quiet",
]


def run_cli(capsys: pytest.CaptureFixture, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def last_json(out: str) -> dict:
    return json.loads(out.strip().splitlines()[-1])


def test_train_json_last_line(capsys: pytest.CaptureFixture) -> None:
    code, out, err = run_cli(capsys, "train", "--epochs", "3", "--seed", "1", "--json", *TINY)
    assert code == 0, err
    record = last_json(out)
    for key in (
        "r2",
        "rmse",
        "val_r2",
        "params",
        "epochs",
        "seconds",
        "device",
        "gate",
        "best_epoch",
        "stopped_reason",
    ):
        assert key in record
    assert record["epochs"] == 3 and record["gate"] == "grkan" and record["device"] == "cpu"
    assert record["dataset"] == "regimes" and record["stopped_reason"] == "completed" and record["seed"] == 1
    assert isinstance(record["params"], int) and record["params"] > 0 and record["seconds"] > 0
    assert json.loads(out) == record  # stdout is the JSON object alone (pipe it to jq), the summary on stderr
    assert "test:" in err and "r2" in err
    # the same seed again: the same numbers
    code, out2, _ = run_cli(capsys, "train", "--epochs", "3", "--seed", "1", "--json", *TINY)
    again = last_json(out2)
    assert again["r2"] == record["r2"] and again["val_loss"] == record["val_loss"]


def test_train_classification_and_standard(capsys: pytest.CaptureFixture) -> None:
    code, out, err = run_cli(
        capsys, "train", "--dataset", "moons", "--gate", "linear", "--expert", "kan", "--epochs", "2", "--json", *TINY
    )
    assert code == 0, err
    record = last_json(out)
    assert 0 <= record["accuracy"] <= 1 and record["log_loss"] > 0 and "r2" not in record
    code, out, err = run_cli(capsys, "train", "--kind", "standard", "--epochs", "2", "--json", *TINY)
    assert code == 0, err
    assert last_json(out)["kind"] == "standard" and last_json(out)["gate"] is None


def test_train_on_csv(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(rng.normal(size=(200, 3)), columns=["a", "b", "noise"])
    frame["price"] = 2 * frame["a"] - frame["b"] ** 2
    path = tmp_path / "houses.csv"
    frame.to_csv(path, index=False)
    code, out, err = run_cli(
        capsys,
        "train",
        "--csv",
        str(path),
        "--target",
        "price",
        "--features",
        "a,b",
        "--epochs",
        "2",
        "--hidden",
        "8",
        "--device",
        "cpu",
        "--quiet",
        "--json",
    )
    assert code == 0, err
    record = last_json(out)
    assert "r2" in record and record["epochs"] == 2
    # the model saw two features: 2 input scales + gate input 2x8+8 + ... -> compare with all three features
    code, out3, _ = run_cli(
        capsys,
        "train",
        "--csv",
        str(path),
        "--target",
        "price",
        "--epochs",
        "2",
        "--hidden",
        "8",
        "--device",
        "cpu",
        "--quiet",
        "--json",
    )
    assert last_json(out3)["params"] > record["params"]


@pytest.mark.parametrize(
    "argv,needle",
    [
        (["train", "--experts", "0"], "--experts"),
        (["train", "--gate", "foo"], "--gate"),
        (["train", "--device", "tpu"], "--device"),
        (["train", "--epochs", "ten"], "--epochs"),
        (["train", "--dataset", "nope"], "'nope'"),
        (["train", "--lr", "-1"], "--lr"),
        (["train", "--epochs", "0"], "--epochs"),
        (["train", "--top-k", "5", "--experts", "3"], "--top-k"),
        (["train", "--hidden", "8,x"], "--hidden"),
        (["train", "--option", "noise"], "KEY=VALUE"),
        (["train", "--option", "colour=red"], "--option"),
        (["train", "--option", "noise=99"], "noise"),
        (["train", "--expert", "lstm"], "model.expert"),
        (["train", "--csv", "/no/such/file.csv", "--target", "y"], "--csv"),
        (["train", "--csv", "x.csv"], "--target"),
        (["train", "--target", "y"], "--csv"),
        (["train", "--threads", "0"], "--threads"),
        (["nonsense"], "nonsense"),
        ([], "COMMAND"),
    ],
)
def test_invalid_input_one_line_exit_2(capsys: pytest.CaptureFixture, argv: list[str], needle: str) -> None:
    code, _, err = run_cli(capsys, *argv)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:"), err
    assert needle in lines[0] and "Traceback" not in err


def test_bad_csv_content_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    path = tmp_path / "bad.csv"
    path.write_text("a,b,label\n" + "\n".join(f"{i},{i * 2},{'yes' if i % 2 else 'n/a'}" for i in range(40)))
    code, _, err = run_cli(capsys, "train", "--csv", str(path), "--target", "missing", "--epochs", "1")
    assert code == 2 and len(err.strip().splitlines()) == 1 and "missing" in err


def test_unavailable_device(capsys: pytest.CaptureFixture) -> None:
    from kamoe_viz.training import available_devices

    missing = next((d for d in ("cuda", "mps") if d not in available_devices()), None)
    if missing is None:
        pytest.skip("every device is present here")
    code, _, err = run_cli(capsys, "train", "--device", missing)
    assert code == 2 and "--device" in err and "available: auto, cpu" in err


def test_divergence_exit_3_with_advice(capsys: pytest.CaptureFixture) -> None:
    code, out, err = run_cli(capsys, "train", "--lr", "10", "--epochs", "3", "--json", *TINY, "--batch-size", "8")
    assert code == 3
    record = last_json(out)
    assert record["stopped_reason"] == "diverged" and "lower the learning rate" in record["message"].lower()
    assert err.strip().splitlines()[-1].startswith("error: Training diverged in epoch ") and np.isfinite(record["r2"])
    assert "lower the learning rate" in err.lower() and "warning: Training diverged" not in err


def test_no_fast_trains_on_plain_autograd(capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    from kamoe_viz.nn import fast
    from kamoe_viz.training import trainer as trainer_module

    seen = []
    original = trainer_module.Trainer.__init__

    def spy(self, *a, **kw):
        original(self, *a, **kw)
        seen.append((self.gradient_path, self.gradient_path_reason, self.native_kernel))

    monkeypatch.setattr(trainer_module.Trainer, "__init__", spy)
    code, out, _ = run_cli(capsys, "train", "--no-fast", "--epochs", "2", "--json", *TINY)
    assert code == 0 and np.isfinite(last_json(out)["r2"])
    assert seen == [("autograd", f"{fast.FAST_ENV}=0 (fast paths off)", False)]
    assert fast.enabled()  # only that command ran plain


def test_save_stores_the_run(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from kamoe_viz.runstore import RunStore

    code, out, err = run_cli(capsys, "train", "--epochs", "2", "--save", "--runs-dir", str(tmp_path), "--json", *TINY)
    assert code == 0, err
    run_id = last_json(out)["run_id"]
    assert run_id and f"saved as run {run_id}" in err
    loaded = RunStore(tmp_path).load(run_id)
    assert loaded.result.epochs_run == 2 and loaded.config.model.n_experts == 2


def test_datasets_listing(capsys: pytest.CaptureFixture) -> None:
    code, out, _ = run_cli(capsys, "datasets")
    assert code == 0
    names = [line.split()[0] for line in out.splitlines() if line.strip() and not line.startswith("Also")]
    assert names[0] == "regimes" and "california" in names and "moons" in names
    assert any(line.startswith("moons") and "classification" in line for line in out.splitlines())
    code, out, _ = run_cli(capsys, "datasets", "--json")
    rows = json.loads(out)
    assert {r["name"] for r in rows} >= {"regimes", "california"} and "n_samples" in rows[0]["options"]
    code, out, _ = run_cli(capsys, "datasets", "-v")
    assert "--option n_samples=" in out


def test_compare_commands_are_registered(capsys: pytest.CaptureFixture) -> None:
    pytest.importorskip("kamoe_viz.cli.compare")
    assert main(["compare", "--help"]) == 0 and "--gates" in capsys.readouterr().out


def test_progress_bar_lines_and_terminal() -> None:
    def info(e: int) -> SimpleNamespace:
        return SimpleNamespace(
            epoch=e,
            train_loss=0.5,
            val_loss=0.4,
            best_epoch=e,
            lr=1e-3,
            seconds_elapsed=float(e),
            eta_seconds=float(20 - e),
        )

    log = io.StringIO()
    bar = ProgressBar(20, log)
    for e in range(1, 21):
        bar(info(e))
    bar.close()
    lines = log.getvalue().splitlines()
    assert len(lines) == 11 and lines[0].startswith("[#") and "epoch 20/20" in lines[-1]  # epoch 1, then every 2nd

    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    tty = Tty()
    bar = ProgressBar(4, tty)
    for e in range(1, 5):
        bar(info(e))
    bar.close()
    assert tty.getvalue().count("\r\033[K") == 4 and tty.getvalue().endswith("\n")


def test_module_entry_point_subprocess() -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    ok = subprocess.run(
        [sys.executable, "-m", "kamoe_viz", "train", "--epochs", "2", "--json", *TINY[:-1]],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        timeout=300,
    )
    assert ok.returncode == 0, ok.stderr
    assert "r2" in json.loads(ok.stdout.strip().splitlines()[-1])
    assert "epoch 2/2" in ok.stderr  # progress on stderr, not in the JSON stream
    bad = subprocess.run(
        [sys.executable, "-m", "kamoe_viz", "train", "--experts", "-3"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        timeout=300,
    )
    assert bad.returncode == 2 and bad.stdout == ""
    assert len(bad.stderr.strip().splitlines()) == 1 and "--experts" in bad.stderr and "Traceback" not in bad.stderr
