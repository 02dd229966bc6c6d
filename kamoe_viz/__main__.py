"""``python -m kamoe_viz``: the command line (see :mod:`kamoe_viz.cli`)."""
import sys

from kamoe_viz.cli import main

if __name__ == "__main__":
    sys.exit(main())
