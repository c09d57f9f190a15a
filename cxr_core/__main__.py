"""`python -m cxr_core ...`: see cxr_core/cli.py."""

import sys

from cxr_core.cli import main

sys.exit(main())
