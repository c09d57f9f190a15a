"""`python -m cxr_core ...`: see cxr_core/cli/ (one module per command)."""

import sys

from cxr_core.cli import main

sys.exit(main())
