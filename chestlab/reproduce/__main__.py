"""``python -m chestlab.reproduce COMMAND ...``: see :mod:`chestlab.reproduce.cli`."""

import sys

from .cli import main

sys.exit(main())
