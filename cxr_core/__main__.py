"""`python -m cxr_core ...`: see cxr_core/cli/ (one module per command)."""

import sys

from cxr_core.cli.native_logs import keep_native_logs_off_the_terminal

keep_native_logs_off_the_terminal()

from cxr_core.cli import main  # noqa: E402  (after the filter: nothing native has written yet)

sys.exit(main())
