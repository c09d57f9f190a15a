"""Keep the native libraries' log lines off the terminal of a command.

TensorFlow's C++ core and its CUDA probes write to file descriptor 2 from their first import ("oneDNN custom
operations are on", "Could not find cuda drivers", "failed call to cuInit"), before absl's logging is set up, so
TF_CPP_MIN_LOG_LEVEL does not reach them. For a command's process (`python -m cxr_core`, never a test run
in-process) descriptor 2 becomes a pipe whose reader drops those lines and passes everything else on; Python's own
`sys.stderr` (progress bars, refusals, tracebacks) writes straight to the terminal.
"""

from __future__ import annotations

import atexit
import os
import re
import sys
import threading

# absl's prefix (severity, date, time, thread, file:line]) and the line it writes before it is initialised.
NATIVE_LOG = re.compile(rb"^([IWEF]\d{4} \d\d:\d\d:\d+\.\d+\s+\d+ [\w./-]+:\d+\] |"
                        rb"WARNING: All log messages before absl::InitializeLog\(\) is called)")


def keep_native_logs_off_the_terminal() -> None:
    """Route descriptor 2 through the filter for the rest of this process (a no-op where it cannot be)."""
    try:
        terminal = os.dup(2)
        read_end, write_end = os.pipe()
    except OSError:
        return
    sys.stderr.flush()
    sys.stderr = open(terminal, "w", buffering=1, encoding=sys.stderr.encoding or "utf-8", errors="backslashreplace",
                      closefd=False)
    os.dup2(write_end, 2)
    os.close(write_end)
    reader = threading.Thread(target=_pass_on, args=(read_end, terminal), daemon=True)
    reader.start()

    def close() -> None:  # end of the process: the native side's last lines pass before it exits
        os.dup2(terminal, 2)
        reader.join(timeout=2)

    atexit.register(close)


def _pass_on(read_end: int, terminal: int) -> None:
    with open(read_end, "rb", buffering=0) as pipe:
        pending = b""
        while chunk := pipe.read(65536):
            pending += chunk
            *lines, pending = pending.split(b"\n")
            for line in lines:
                if not NATIVE_LOG.match(line):
                    os.write(terminal, line + b"\n")
        if pending and not NATIVE_LOG.match(pending):
            os.write(terminal, pending)
