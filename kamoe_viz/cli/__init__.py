"""Command line: ``kamoe-viz`` (or ``python -m kamoe_viz``) ``train | datasets | compare | reproduce | app | ...``.

Any invalid input ends with exit status 2 and one line on stderr naming the problem (no traceback). Set
``KAMOE_DEBUG=1`` to see the traceback of an unexpected error.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
from types import ModuleType

from kamoe_viz.errors import KamoeError, ValidationError

EXIT_INVALID = 2


class OneLineParser(argparse.ArgumentParser):
    """argparse that reports a bad argument in one line (``error: ...``) with exit status 2, no usage dump."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(EXIT_INVALID, f"error: {self.prog}: {_one_line(message)}\n")


def _one_line(text: object) -> str:
    return " ".join(str(text).split())


def _error_line(exc: BaseException) -> str:
    """The exception's message in one line; a config field is shown with the flag that sets it."""
    text = _one_line(str(exc))
    if isinstance(exc, ValidationError):
        from kamoe_viz.cli.train_args import FLAGS

        flag = FLAGS.get(exc.field) or ("--option" if str(exc.field).startswith("data.options.") else None)
        if flag and text.startswith(f"{exc.field}:"):
            text = f"{flag} ({exc.field}):" + text[len(exc.field) + 1 :]
    return text


def _first_sentence(text: str) -> str:
    text = _one_line(text)
    for i, ch in enumerate(text):
        if ch == "." and (i + 1 == len(text) or text[i + 1] == " ") and not text[max(0, i - 2) : i].isdigit():
            return text[: i + 1]
    return text


def cmd_datasets(args: argparse.Namespace) -> int:
    """List the built-in datasets: name, task, kind and the first sentence of the description."""
    from kamoe_viz.data import list_datasets

    infos = list_datasets()
    if args.json:
        rows = []
        for info in infos:
            rows.append(
                {
                    "name": info.name,
                    "title": info.title,
                    "task": info.task,
                    "description": info.description,
                    "is_sequence": info.is_sequence,
                    "needs_download": info.needs_download,
                    "options": {
                        k: {
                            "type": o.type,
                            "default": o.default,
                            "min": o.min,
                            "max": o.max,
                            "choices": list(o.choices) if o.choices else None,
                            "help": o.help,
                        }
                        for k, o in info.options.items()
                    },
                }
            )
        print(json.dumps(rows))
        return 0
    width = max(len(i.name) for i in infos)
    for info in infos:
        kind = "sequence" if info.is_sequence else ("2-D" if getattr(info, "is_2d", False) else "tabular")
        note = " (downloads once)" if info.needs_download else ""
        print(f"{info.name:<{width}}  {info.task:<14}  {kind:<8}  {_first_sentence(info.description)}{note}")
        if args.verbose:
            for key, o in info.options.items():
                bounds = f" {o.min:g}..{o.max:g}" if o.min is not None and o.max is not None else ""
                print(f"{'':<{width}}    --option {key}=  default {o.default!r}{bounds}  {o.help}")
    print("\nAlso: --csv PATH --target COLUMN [--features A,B] trains on your own CSV.")
    return 0


def cmd_presets(args: argparse.Namespace) -> int:
    from kamoe_viz.presets import PRESET_LIST

    if args.json:
        print(
            json.dumps(
                [
                    {
                        "name": p.name,
                        "title": p.title,
                        "dataset": p.dataset,
                        "caption": p.caption,
                        "claims": [c.describe() for c in p.claims],
                    }
                    for p in PRESET_LIST
                ]
            )
        )
        return 0
    for p in PRESET_LIST:
        print(f"{p.name:14s} {p.title} ({p.dataset})")
        print(f"{'':14s} {p.caption}")
        for claim in p.claims:
            print(f"{'':14s} claim: {claim.describe()}")
    return 0


def cmd_native(args: argparse.Namespace) -> int:
    """Build the native KAN kernel now (it is optional: without it training uses the PyTorch path)."""
    from kamoe_viz.nn.fast import native

    result = native.build()
    print(result)
    return 0 if result.state in ("ready", "off") or not args.strict else 1


def build_parser(prog: str = "python -m kamoe_viz") -> argparse.ArgumentParser:
    from kamoe_viz.cli import app, train

    parser = OneLineParser(
        prog=prog, description="KAMoE Explorer: train mixtures of experts and look inside their gates."
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    train.add_command(sub)
    d = sub.add_parser("datasets", help="list the built-in datasets")
    d.add_argument("--json", action="store_true", help="one JSON array with every dataset and its options")
    d.add_argument("-v", "--verbose", action="store_true", help="also list each dataset's options")
    d.set_defaults(func=cmd_datasets)
    pr = sub.add_parser("presets", help="list the presets with the claims their tests check over seeds")
    pr.add_argument("--json", action="store_true", help="one JSON array of presets and claims")
    pr.set_defaults(func=cmd_presets)
    n = sub.add_parser("native", help="build the C kernel that speeds up KAN layers on the CPU (needs a C compiler)")
    n.add_argument("--strict", action="store_true", help="exit 1 if the kernel cannot be built")
    n.set_defaults(func=cmd_native)
    compare_cli: ModuleType | None
    try:
        compare_cli = importlib.import_module("kamoe_viz.cli.compare")
    except ImportError:  # the compare commands are optional
        compare_cli = None
    if compare_cli is not None:
        compare_cli.add_commands(sub)
    app.add_command(sub)
    return parser


def main(argv: list[str] | None = None, prog: str = "python -m kamoe_viz") -> int:
    """Run one command; returns the exit status."""
    args_list = sys.argv[1:] if argv is None else list(argv)
    if args_list[:1] == ["app"]:  # Streamlit's own options (--server.port 8600) pass through unparsed
        from kamoe_viz.cli.app import run_app

        try:
            return run_app(args_list[1:])
        except KamoeError as exc:
            print(f"error: {_error_line(exc)}", file=sys.stderr)
            return EXIT_INVALID
    parser = build_parser(prog)
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help or a bad argument (already reported in one line)
        return int(exc.code or 0) if not isinstance(exc.code, str) else EXIT_INVALID
    try:
        if args.command == "reproduce":  # compare's handler wants the command line for its report
            return int(args.func(args, argv))
        return int(args.func(args))
    except KamoeError as exc:
        print(f"error: {_error_line(exc)}", file=sys.stderr)
        return EXIT_INVALID
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # the reader went away (`... | head`): stop quietly, as other command-line tools do
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # no second error when Python flushes stdout at exit
        return 0
    except (FileNotFoundError, PermissionError, IsADirectoryError) as exc:
        print(f"error: {_one_line(exc)}", file=sys.stderr)
        return EXIT_INVALID
    except Exception as exc:  # a bug, not bad input: still one line unless debugging
        if os.environ.get("KAMOE_DEBUG"):
            raise
        print(
            f"error: unexpected {type(exc).__name__}: {_one_line(exc)} (set KAMOE_DEBUG=1 for the traceback)",
            file=sys.stderr,
        )
        return 1


def console_main() -> None:
    """The ``kamoe-viz`` console script."""
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch loads, as in ``python -m kamoe_viz``
    sys.exit(main(prog="kamoe-viz"))
