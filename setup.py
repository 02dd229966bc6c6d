"""Build hook: ship the Streamlit app (app.py, pages/, its icon and .streamlit/config.toml) inside the wheel.

Everything else is declared in pyproject.toml. The app lives at the top of the repository (``streamlit run app.py``
works from a checkout), so it is not a package setuptools can find; this copies it to
``kamoe_viz_app/streamlit_app/`` in the build, where ``kamoe-viz app`` looks for it in an installed package.
The app's helpers are the ordinary package ``kamoe_viz_app`` (found by pyproject's patterns), so only the entry
script, the page modules and two data files are copied.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent
APP_FILES = ["app.py", "data/icon.png", ".streamlit/config.toml"]  # plus every pages/*.py
BUNDLE = Path("kamoe_viz_app") / "streamlit_app"


def app_files() -> list[str]:
    return APP_FILES + sorted(str(p.relative_to(ROOT)) for p in (ROOT / "pages").glob("*.py"))


class BuildPyWithApp(build_py):
    def run(self) -> None:
        super().run()
        if getattr(self, "editable_mode", False):  # an editable install runs the checkout's app.py
            return
        target = Path(self.build_lib) / BUNDLE
        for rel in app_files():
            dest = target / rel
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(ROOT / rel, dest)


setup(cmdclass={"build_py": BuildPyWithApp})
