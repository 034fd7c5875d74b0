"""``python -m sketchla``: the command line (see ``sketchla.cli``)."""

import sys

from .cli import main

sys.exit(main())
