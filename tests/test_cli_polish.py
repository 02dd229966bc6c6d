"""Rough edges a new user meets at the command line: ragged CSVs, an empty --gates, too many --threads, the CLI
piped into `head`, and the wording when no epoch improved."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from kamoe_viz.cli import main
from kamoe_viz.cli.train import best_epoch_text
from kamoe_viz.data import read_csv_table
from kamoe_viz.errors import DataError

ROOT = Path(__file__).resolve().parents[1]


def test_a_row_with_more_fields_than_the_header_is_named() -> None:
    text = "a,b,y\n" + "".join(f"{i},{i},{i}\n" for i in range(30)) + "1,2,3,4,5\n"
    with pytest.raises(DataError, match=r"line 32 has 5 fields under a header of 3"):
        read_csv_table(text.encode())
    assert len(read_csv_table(("a,b,y,\n" + "1,2,3,\n" * 25).encode())) == 25  # a trailing delimiter is fine


def test_an_empty_gate_list_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["compare", "--gates", "", "--seeds", "1"]) == 2
    assert "--gates" in capsys.readouterr().err


def test_threads_above_the_cores_are_capped_with_a_warning() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "kamoe_viz", "train", "--threads", "4096", "--epochs", "1", "--hidden", "4", "--quiet"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert f"using {os.cpu_count()}" in proc.stderr


def test_piped_into_head_it_stops_quietly() -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "kamoe_viz", "datasets"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=dict(os.environ, PYTHONUNBUFFERED="1"),
    )
    proc.stdout.close()  # what `head` does once it has its lines (here: before the first one is written)
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=60) == 0 and "BrokenPipe" not in err and "Traceback" not in err, err


def test_no_improvement_is_said_in_words() -> None:
    assert best_epoch_text(None) == "no epoch improved on the start"
    assert best_epoch_text(7) == "best epoch 7"


def test_a_csv_takes_only_the_task_option(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    csv = tmp_path / "c.csv"
    csv.write_text("a,b,y\n" + "".join(f"{i},{i % 3},{i % 4}\n" for i in range(40)))
    common = ["train", "--csv", str(csv), "--target", "y", "--epochs", "1", "--hidden", "4", "--quiet"]
    assert main(common + ["--option", "noise=1"]) == 2
    assert "not an option of a CSV dataset" in capsys.readouterr().err
    assert main(common + ["--option", "task=regression"]) == 0
    assert "c: regression" in capsys.readouterr().out
    assert main(common) == 0
    assert "c: classification" in capsys.readouterr().out  # inferred from four whole-number values


def test_offline_california_is_one_clear_message(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import warnings

    from kamoe_viz.config import DataConfig
    from kamoe_viz.data import load_dataset

    monkeypatch.delenv("KAMOE_CALIFORNIA_CSV", raising=False)
    monkeypatch.setenv("SCIKIT_LEARN_DATA", str(tmp_path))  # an empty cache
    for proxy in ("https_proxy", "HTTPS_PROXY", "http_proxy", "HTTP_PROXY"):  # never download, even online
        monkeypatch.setenv(proxy, "http://127.0.0.1:9")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(DataError, match="KAMOE_CALIFORNIA_CSV"):
            load_dataset(DataConfig(name="california"))
    assert not [w for w in caught if "Retry" in str(w.message)]


def test_runs_stopping_at_the_epoch_cap_say_so(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["train", "--epochs", "3", "--hidden", "4", "--quiet"]) == 0
    assert "epoch cap (3 epochs)" in capsys.readouterr().out
    assert main(["train", "--epochs", "3", "--hidden", "4", "--quiet", "--patience", "0"]) == 0
    assert "epoch cap" not in capsys.readouterr().out  # without early stopping the cap is the plan


@pytest.mark.parametrize("out", ["{tmp}/a-file/results.csv", "/proc/results.csv", "{tmp}"])
def test_compare_refuses_an_unwritable_out_before_training(
    out: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "a-file").write_text("x")
    code = main(["compare", "--gates", "linear", "--seeds", "1", "--epochs", "1", "--out", out.format(tmp=tmp_path)])
    err = capsys.readouterr().err
    assert code == 2 and "--out" in err
    assert "finished" not in err  # no run trained before the refusal


@pytest.mark.parametrize("out_dir", ["{tmp}/a-file", "{tmp}/a-file/sub", "/proc/kamoe-results"])
def test_reproduce_refuses_a_bad_out_dir_before_training(
    out_dir: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "a-file").write_text("x")
    code = main(
        ["reproduce", "sequential", "--seeds", "1", "--max-epochs", "1", "--out-dir", out_dir.format(tmp=tmp_path)]
    )
    err = capsys.readouterr().err
    assert code == 2 and "--out-dir" in err and "finished" not in err
