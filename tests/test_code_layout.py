"""The house rules the README's architecture states, checked on the source: no file over 400 lines, the library
never imports streamlit, and pages neither build layers nor import torch (they draw what the library computed)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MAX_LINES = 400
SOURCE_DIRS = ("kamoe_viz", "kamoe_viz_app", "pages", "tests", "benchmarks", "examples")


def _python_files(*dirs: str) -> list[Path]:
    files = [p for d in dirs for p in sorted((ROOT / d).rglob("*.py")) if ".envs" not in p.parts]
    return files + ([ROOT / "app.py"] if not dirs or "pages" in dirs else [])


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def test_no_source_file_is_over_400_lines() -> None:
    long = {
        str(p.relative_to(ROOT)): n
        for p in _python_files(*SOURCE_DIRS)
        if (n := len(p.read_text(encoding="utf-8").splitlines())) > MAX_LINES
    }
    assert not long, f"split these files (at most {MAX_LINES} lines each): {long}"


@pytest.mark.parametrize("module", ["streamlit"])
def test_the_library_never_imports_the_ui(module: str) -> None:
    offenders = [
        str(p.relative_to(ROOT))
        for p in _python_files("kamoe_viz")
        if any(name == module or name.startswith(module + ".") for name in _imports(p))
    ]
    assert not offenders


def test_pages_build_no_layers_and_import_no_torch() -> None:
    forbidden = ("torch", "kamoe_viz.nn")
    offenders = {
        str(p.relative_to(ROOT)): sorted(n for n in _imports(p) if n == f or n.startswith(f + "."))
        for p in _python_files("pages")
        for f in forbidden
        if any(n == f or n.startswith(f + ".") for n in _imports(p))
    }
    assert not offenders, f"pages draw; the library builds and computes: {offenders}"
