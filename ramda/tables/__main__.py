"""``python -m ramda.tables``: see :mod:`ramda.tables.cli`."""

import sys

from .cli import main

sys.exit(main())
