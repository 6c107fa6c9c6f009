"""``python -m stacwatchd`` runs the command line."""

import sys

from stacwatchd.cli import main

sys.exit(main())
