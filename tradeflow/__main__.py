"""Run the tradeflow command line: ``python -m tradeflow``."""

import sys

from tradeflow.cli import main

sys.exit(main())
