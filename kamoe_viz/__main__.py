"""``python -m kamoe_viz``: the command line (see :mod:`kamoe_viz.cli`)."""

import os
import sys

# Idle OpenMP threads sleep instead of spinning: on a busy machine (other processes, several trainings at once)
# spinning torch threads fight over the cores and small-batch training gets many times slower. Must be set before
# torch loads; an explicit OMP_WAIT_POLICY in the environment wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from kamoe_viz.cli import main

if __name__ == "__main__":
    sys.exit(main())
