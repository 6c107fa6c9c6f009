"""``python -m stacwatchd`` runs the command line."""

import sys

from stacwatchd.cli import main

if __name__ == "__main__":  # build processes import this module too, and must not run it
    sys.exit(main())
