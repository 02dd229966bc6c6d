"""KAMoE Explorer: Streamlit entry point. Start with ``bash scripts/app.sh`` or ``streamlit run app.py`` (binds to
127.0.0.1, see .streamlit/config.toml). What every run draws (page setup, the menu, the sidebar, then the open page)
is :func:`kamoe_viz_app.entry.main`.
"""

from __future__ import annotations

import os
from pathlib import Path

# Idle OpenMP threads sleep instead of spinning: with several sessions training at once (or a busy machine),
# spinning torch threads fight over the cores and small-batch training gets many times slower. Set before torch
# is first imported (by a page); an explicit OMP_WAIT_POLICY in the environment wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from kamoe_viz_app import entry

entry.main(Path(__file__).resolve().parent)
