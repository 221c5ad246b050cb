"""``python -m receiver`` runs the command line."""

import sys

from receiver.cli import main

sys.exit(main())
