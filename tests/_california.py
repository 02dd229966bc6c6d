"""Where the tests find the California CSV: env KAMOE_CALIFORNIA_CSV (as the library reads it), else the copy
shared beside the checkout (../shared/datasets/california_housing.csv)."""

from __future__ import annotations

import os
from pathlib import Path

CALIFORNIA_CSV = Path(
    os.environ.get("KAMOE_CALIFORNIA_CSV")
    or Path(__file__).resolve().parents[1].parent / "shared" / "datasets" / "california_housing.csv"
)
