"""One set of defaults: the Train page, the Compare page, `train` and `compare` all start from config's."""

from __future__ import annotations

import _app_support
import pytest
from streamlit.testing.v1 import AppTest

from kamoe_viz.cli import compare as cli_compare
from kamoe_viz.config import ModelConfig, TrainConfig
from kamoe_viz.training.results import sweep_epoch_cap_notice

MODEL, TRAIN = ModelConfig(), TrainConfig()
WIDTHS = ",".join(map(str, MODEL.expert_hidden))


def test_cli_train_and_compare_share_configs_defaults() -> None:
    from kamoe_viz.cli import build_parser

    parser = build_parser()
    for command in (["train"], ["compare"]):
        args = parser.parse_args(command)
        assert (args.hidden, args.epochs, args.lr, args.patience) == (
            WIDTHS,
            TRAIN.epochs,
            TRAIN.lr,
            TRAIN.early_stopping,
        ), command
    assert TRAIN.epochs == cli_compare.COMPARE_DEFAULT_EPOCHS


@pytest.mark.parametrize(
    "page, keys",
    [
        ("pages/compare.py", ("cmp.hidden", "cmp.epochs", "cmp.lr", "cmp.patience")),
        ("pages/train.py", ("w.model.expert_hidden", "w.train.epochs", "w.train.lr", "w.train.early_stopping")),
    ],
)
def test_pages_start_from_configs_defaults(page: str, keys: tuple[str, ...]) -> None:
    """The widgets take the config's defaults (the Train page with ?defaults=1: without settings in the address it
    opens the opening preset, tests/test_app.py)."""
    at = AppTest.from_file(_app_support.APP, default_timeout=120)
    at.query_params["defaults"] = "1"
    at = at.switch_page(page).run()
    assert not at.exception
    values = tuple(at.session_state[k] for k in keys)
    assert values == (WIDTHS, TRAIN.epochs, TRAIN.lr, TRAIN.early_stopping)


def test_sweep_notice_counts_runs_at_the_cap() -> None:
    cfg = TrainConfig(epochs=10, early_stopping=3)
    text = sweep_epoch_cap_notice(["completed", "early_stopping", "completed"], [10, 6, 10], cfg)
    assert text and text.startswith("2 of 3 runs stopped at the epoch cap (10 epochs)")
    assert sweep_epoch_cap_notice(["early_stopping"], [6], cfg) is None
    assert sweep_epoch_cap_notice(["completed"], [10], TrainConfig(epochs=10, early_stopping=0)) is None


def test_compare_output_says_runs_hit_the_cap(capsys: pytest.CaptureFixture[str]) -> None:
    code = cli_compare.main(
        [
            "compare",
            "--gates",
            "linear",
            "--seeds",
            "2",
            "--no-standard",
            "--epochs",
            "2",
            "--hidden",
            "4",
            "--option",
            "n_samples=300",
            "--quiet",
        ]
    )
    out = capsys.readouterr().out
    assert code == 0 and "note: 2 of 2 runs stopped at the epoch cap (2 epochs)" in out
