"""A run's `status.json` (state, epoch, ETA, headline metrics): written by the pipeline and its
callbacks, read by the app's Training page and the launcher."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from cxr_core.fileio import write_json_atomic


def read_status(run_dir: Path) -> dict[str, Any]:
    try:
        return json.loads((Path(run_dir) / "status.json").read_text())
    except (OSError, ValueError):
        return {}


def write_status(run_dir: Path, **fields: Any) -> None:
    """Merge `fields` into the run's status (atomic replace)."""
    status = read_status(run_dir)
    status.update(fields, updated=time.time())
    write_json_atomic(Path(run_dir) / "status.json", status)
