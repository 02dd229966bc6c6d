"""examples/quickstart.ipynb runs top to bottom (tiny epochs), shows its charts, and has exactly the cells of
examples/quickstart.py (the notebook is generated from the script by scripts/make_quickstart_notebook.py)."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat", reason="nbformat/nbclient (requirements-dev.txt) run the notebook")
nbclient = pytest.importorskip("nbclient", reason="nbformat/nbclient (requirements-dev.txt) run the notebook")
pytest.importorskip("ipykernel", reason="the notebook needs a Python kernel (ipykernel)")

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "examples" / "quickstart.py"
NOTEBOOK = ROOT / "examples" / "quickstart.ipynb"


def _maker():
    spec = importlib.util.spec_from_file_location(
        "make_quickstart_notebook", ROOT / "scripts" / "make_quickstart_notebook.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_notebook_has_the_scripts_cells() -> None:
    nb = nbformat.read(NOTEBOOK, as_version=4)
    ours = [(c.cell_type, c.source) for c in nb.cells]
    assert ours == _maker().script_cells(SCRIPT.read_text(encoding="utf-8")), (
        "examples/quickstart.ipynb is out of date: run scripts/make_quickstart_notebook.py"
    )
    assert all(not c.get("outputs") for c in nb.cells if c.cell_type == "code"), "commit the notebook without outputs"


def test_notebook_executes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KAMOE_QUICKSTART_EPOCHS", "3")
    monkeypatch.setenv("KAMOE_QUICKSTART_OUT", str(tmp_path / "charts"))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p))
    nb = nbformat.read(NOTEBOOK, as_version=4)
    client = nbclient.NotebookClient(
        nb, timeout=240, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    )
    client.execute()
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    text = "".join(o.get("text", "") for o in outputs if o.output_type == "stream")
    assert "test R² " in text and "after 3 epochs" in text and "NMI vs true regimes" in text
    shown = [o for o in outputs if o.output_type in ("display_data", "execute_result")]
    # Altair's default renderer: an HTML page that embeds the Vega-Lite spec and draws it with vega-embed
    html = [o["data"]["text/html"] for o in shown if "text/html" in o.get("data", {})]
    drawn = [h for h in html if "vegaEmbed" in h and "vega-lite" in h]
    assert len(drawn) >= 5  # loss, splines, gate map, comparison metric and curves, drawn inline
    saved = sorted(p.name for p in (tmp_path / "charts").iterdir())
    assert saved == [
        "compare_curves.svg",
        "compare_metric.svg",
        "load.svg",
        "loss.svg",
        "splines.svg",
        "winner_map.svg",
    ]
    assert all((tmp_path / "charts" / name).read_bytes().startswith(b"<svg") for name in saved)
