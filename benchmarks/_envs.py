"""Private virtual environments for the comparison packages, made on first use under benchmarks/.envs/ (ignored by
git). The reference code is installed from PyPI with pip, never copied into this repository."""

from __future__ import annotations

import os
import subprocess
import sys
import venv
from pathlib import Path

ENVS = Path(__file__).resolve().parent / ".envs"

PACKAGES = {
    # the original KAMoE (Keras 3 + JAX) and what it needs; kamoe 0.1.8 requires Python < 3.12
    "reference": ["kamoe==0.1.8", "keras", "keras-efficient-kan", "jax", "jaxlib"],
    # pykan (the original KAN); it imports these at module level
    "pykan": [
        "pykan",
        "torch==2.13.0",
        "numpy",
        "scipy",
        "scikit-learn",
        "sympy",
        "matplotlib",
        "pandas",
        "pyyaml",
        "tqdm",
        "setuptools",
    ],
}


def python_of(name: str) -> Path:
    return ENVS / name / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def ensure_env(name: str, quiet: bool = False) -> Path:
    """The python executable of environment ``name``, creating it and installing its packages if needed."""
    marker = ENVS / name / ".installed"
    python = python_of(name)
    if marker.exists() and python.exists():
        return python
    ENVS.mkdir(parents=True, exist_ok=True)
    if not python.exists():
        print(f"[setup] creating {ENVS / name} (first run only)", file=sys.stderr, flush=True)
        venv.EnvBuilder(with_pip=True, clear=True).create(ENVS / name)
    packages = PACKAGES[name]
    print(f"[setup] pip install {' '.join(packages)}", file=sys.stderr, flush=True)
    extra: list[str] = []
    cmd = [
        str(python),
        "-m",
        "pip",
        "install",
        "--disable-pip-version-check",
        *(["-q"] if quiet else []),
        *extra,
        *packages,
    ]
    result = subprocess.run(cmd, stdout=sys.stderr, stderr=sys.stderr)
    if result.returncode != 0:
        raise SystemExit(
            f"could not install {name} environment: pip exited with {result.returncode}; "
            f"see the output above (command: {' '.join(cmd)})"
        )
    marker.write_text(" ".join(packages) + "\n")
    return python
