"""``python -m chestlab.reproduce COMMAND ...``: see :mod:`chestlab.reproduce.cli`."""

import sys

from ..interrupts import run_main

sys.exit(run_main("chestlab.reproduce.cli", "interrupted while starting: nothing was trained or written"))
