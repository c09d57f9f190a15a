"""A run's `status.json` (state, epoch, ETA, headline metrics): written by the pipeline and its
callbacks (on the chief only), read by the app's Training page and the launcher. `read_status` adds the
local cluster's workers (`workers.json`, written by train.workers) when there are any."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from cxr_core.fileio import write_json_atomic


def read_status(run_dir: Path) -> dict[str, Any]:
    from train.workers import read_workers

    status = _read_own(run_dir)
    workers = read_workers(run_dir)
    return {**status, "workers": workers} if workers else status


def _read_own(run_dir: Path) -> dict[str, Any]:
    try:
        return json.loads((Path(run_dir) / "status.json").read_text())
    except (OSError, ValueError):
        return {}


def write_status(run_dir: Path, **fields: Any) -> None:
    """Merge `fields` into the run's status (atomic replace)."""
    status = _read_own(run_dir)
    status.update(fields, updated=time.time())
    write_json_atomic(Path(run_dir) / "status.json", status)
