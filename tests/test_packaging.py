"""`pip install .` (not editable) into a fresh venv gives a working `kamoe-viz` CLI and app.

The fresh venv sees the shared venv's packages through a .pth file (as ``--system-site-packages`` would), so pip
resolves every dependency as already installed and nothing is downloaded; kamoe-viz itself is built from a copy of
the checkout and installed into the fresh venv, which is asserted. Tests run from a temporary directory so the
checkout is never on the path.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
pytestmark = [
    pytest.mark.install,
    pytest.mark.skipif(
        importlib.util.find_spec("pip") is None or importlib.util.find_spec("setuptools") is None,
        reason="pip and setuptools are needed to build and install the package",
    ),
]
SKIP = {
    ".git",
    ".venv",
    "venv",
    "tests",
    "benchmarks",
    "docs",
    "runs",
    "test-artifacts",
    "build",
    "dist",
    "__pycache__",
    ".pytest_cache",
    ".hypothesis",
    ".mypy_cache",
    ".ruff_cache",
    "examples",
}
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
    "--epochs",
    "2",
]


def _ignore(folder: str, names: list[str]) -> set[str]:
    return {n for n in names if n in SKIP or n.endswith(".egg-info")}


@pytest.fixture(scope="module")
def venv(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    tmp = tmp_path_factory.mktemp("install")
    src = tmp / "src"
    shutil.copytree(ROOT, src, ignore=_ignore)
    env_dir = tmp / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(env_dir)], check=True, timeout=60)
    python = env_dir / "bin" / "python"
    purelib = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    shared = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
    (Path(purelib) / "_shared_venv.pth").write_text("\n".join(sorted(shared)) + "\n")
    done = subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", "--no-index", "--no-build-isolation", str(src)],
        capture_output=True,
        text=True,
        cwd=tmp,
        env=_env(tmp),
        timeout=180,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return {"tmp": tmp, "python": python, "bin": env_dir / "bin", "purelib": Path(purelib)}


def _env(tmp: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    return {**env, "OMP_NUM_THREADS": "1", "KAMOE_RUNS_DIR": str(tmp / "runs"), "PYTHONDONTWRITEBYTECODE": "1"}


def test_installed_package_is_the_one_imported(venv: dict[str, Path]) -> None:
    code = (
        "import kamoe_viz, kamoe_viz.cli.app as a; print(kamoe_viz.__file__); print(a.app_script()); "
        "import importlib.resources as r; print(r.files('kamoe_viz').joinpath('py.typed').is_file())"
    )
    out = subprocess.run(
        [str(venv["python"]), "-c", code],
        capture_output=True,
        text=True,
        cwd=venv["tmp"],
        env=_env(venv["tmp"]),
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    package, script, typed = out.stdout.split()
    assert Path(package).is_relative_to(venv["purelib"])
    assert Path(script) == venv["purelib"] / "kamoe_viz_app" / "streamlit_app" / "app.py"
    assert typed == "True"
    shipped = Path(script).parent
    assert {p.name for p in (ROOT / "pages").glob("*.py")} == {p.name for p in (shipped / "pages").glob("*.py")}
    ui = venv["purelib"] / "kamoe_viz_app"  # the app's helper package, installed as a package beside the app
    assert {p.name for p in (ROOT / "kamoe_viz_app").glob("*.py")} == {p.name for p in ui.glob("*.py")}
    assert (shipped / ".streamlit" / "config.toml").is_file() and (shipped / "data" / "icon.png").is_file()
    for data in ("nn/fast/kan_kernel.c", "compare/reference_california.csv"):
        assert (Path(package).parent / data).is_file(), data


def test_console_script_trains(venv: dict[str, Path]) -> None:
    out = subprocess.run(
        [str(venv["bin"] / "kamoe-viz"), "train", "--json", *TINY],
        capture_output=True,
        text=True,
        cwd=venv["tmp"],
        env=_env(venv["tmp"]),
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    facts = json.loads(out.stdout.strip().splitlines()[-1])
    assert facts["epochs"] == 2 and -10 < facts["r2"] <= 1
    bad = subprocess.run(
        [str(venv["bin"] / "kamoe-viz"), "train", "--experts", "-3"],
        capture_output=True,
        text=True,
        cwd=venv["tmp"],
        env=_env(venv["tmp"]),
        timeout=120,
    )
    assert bad.returncode == 2 and "--experts" in bad.stderr and len(bad.stderr.strip().splitlines()) == 1


def _usage(venv: dict[str, Path]) -> str:
    return subprocess.run(
        [str(venv["bin"] / "kamoe-viz"), "--help"],
        capture_output=True,
        text=True,
        cwd=venv["tmp"],
        env=_env(venv["tmp"]),
        timeout=60,
    ).stdout


def test_help_lists_every_module_subcommand(venv: dict[str, Path]) -> None:
    from kamoe_viz.cli import build_parser

    commands = next(a for a in build_parser()._actions if a.dest == "command").choices
    usage = _usage(venv)
    assert usage.startswith("usage: kamoe-viz")
    for name in commands:
        assert f"    {name}" in usage, name
    assert "app" in commands


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_app_serves_from_installed_package(venv: dict[str, Path]) -> None:
    port = _free_port()
    server = subprocess.Popen(
        [str(venv["bin"] / "kamoe-viz"), "app", "--server.port", str(port)],
        cwd=venv["tmp"],
        env=_env(venv["tmp"]),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        status, health, page = None, "", ""
        deadline = time.monotonic() + 120  # a fresh venv's first start compiles every module: slow on a busy machine
        while time.monotonic() < deadline and server.poll() is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=2) as r:
                    health = r.read().decode()
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2) as r:
                    status, page = r.status, r.read().decode()
                break
            except OSError:
                time.sleep(0.3)
        assert server.poll() is None, server.stdout.read() if server.stdout else ""
        assert status == 200 and health == "ok" and "<html" in page.lower(), f"no answer on port {port} in 120 s"
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()
    log = server.stdout.read() if server.stdout else ""
    assert f"127.0.0.1:{port}" in log, log  # bound to loopback, on the port passed through


def test_installed_app_runs_its_first_page(venv: dict[str, Path]) -> None:
    """The shipped app.py and pages import and draw the Train page from site-packages (not from the checkout)."""
    code = (
        "import sys; from streamlit.testing.v1 import AppTest; at = AppTest.from_file(sys.argv[1], "
        "default_timeout=90).run(); assert not at.exception, [e.value for e in at.exception]; "
        "print([b.label for b in at.button])"
    )
    script = venv["purelib"] / "kamoe_viz_app" / "streamlit_app" / "app.py"
    out = subprocess.run(
        [str(venv["python"]), "-c", code, str(script)],
        capture_output=True,
        text=True,
        cwd=venv["tmp"],
        env=_env(venv["tmp"]),
        timeout=120,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "Train" in out.stdout
