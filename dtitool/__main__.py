"""``python -m dtitool``: the command line (see :mod:`dtitool.cli`)."""

import sys

from dtitool.cli import main

sys.exit(main())
