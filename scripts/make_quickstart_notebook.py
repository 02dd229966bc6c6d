"""Write examples/quickstart.ipynb from examples/quickstart.py (its ``# %%`` cells), so the two never drift apart.

    .venv/bin/python scripts/make_quickstart_notebook.py

tests/test_examples.py checks that the notebook's cells are the script's and executes it.
"""

from __future__ import annotations

from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "examples" / "quickstart.py"
NOTEBOOK = ROOT / "examples" / "quickstart.ipynb"


def script_cells(text: str) -> list[tuple[str, str]]:
    """(kind, source) per ``# %%`` cell; a ``# %% [markdown]`` cell's lines lose their leading ``# ``."""
    cells: list[tuple[str, list[str]]] = []
    for line in text.splitlines():
        if line.startswith("# %%"):
            cells.append(("markdown" if "[markdown]" in line else "code", []))
        elif cells:
            cells[-1][1].append(line)
    out = []
    for kind, lines in cells:
        if kind == "markdown":
            lines = [ln[2:] if ln.startswith("# ") else ln.lstrip("#") for ln in lines]
        source = "\n".join(lines).strip("\n")
        if source:
            out.append((kind, source))
    return out


def notebook(text: str) -> nbformat.NotebookNode:
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.metadata["language_info"] = {"name": "python"}
    nb.cells = [
        nbformat.v4.new_markdown_cell(src) if kind == "markdown" else nbformat.v4.new_code_cell(src)
        for kind, src in script_cells(text)
    ]
    for i, cell in enumerate(nb.cells):
        cell["id"] = f"cell-{i}"
    return nb


if __name__ == "__main__":
    nbformat.write(notebook(SCRIPT.read_text(encoding="utf-8")), NOTEBOOK)
    print(f"wrote {NOTEBOOK.relative_to(ROOT)}")
