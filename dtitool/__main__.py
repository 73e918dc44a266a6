"""``python -m dtitool``: the command line (see :mod:`dtitool.cli`)."""

import sys

from dtitool.cli import main

# Guarded: worker processes started with "spawn" (a Dask LocalCluster's) import
# the parent's main module again, and must not run the command line there.
if __name__ == "__main__":
    sys.exit(main())
