"""`python -m cxr_core ...`: see cxr_core/cli/ (one module per command)."""

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from cxr_core.cli import main  # noqa: E402

sys.exit(main())
