"""Atomic file writes (temporary name in the same folder, fsync, rename) and the small formats they carry:
what the registry, model cards, evaluations and the input guards (ood.npz, population.npz) are written with."""

from __future__ import annotations

import io
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from .errors import StorageError
import errno


def write_atomic(path: Path, data: bytes) -> None:
    """Write to a temporary file in the same folder, fsync, then rename over `path`."""
    path = Path(path)
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.chmod(tmp, 0o644)  # mkstemp creates 0600: registry files are meant to be readable
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        fsync_dir(path.parent)
    except OSError as exc:
        raise StorageError(os_message(exc, path)) from None


def write_json_atomic(path: Path, obj: Any) -> None:
    write_atomic(path, json.dumps(obj, indent=2, sort_keys=False, default=_json_default).encode("utf-8"))


def write_npz_atomic(path: Path, **arrays: Any) -> Path:
    """Arrays (and scalars) as an .npz written atomically; read back with `read_npz`."""
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    write_atomic(Path(path), buf.getvalue())
    return Path(path)


def read_npz(path: Path) -> dict[str, np.ndarray] | None:
    """The arrays of an .npz (allow_pickle=False: no code runs), or None when the file is absent."""
    if not Path(path).is_file():
        return None
    with np.load(path, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def os_message(exc: OSError, path: Path) -> str:
    if exc.errno == errno.ENOSPC:
        return f"The disk is full: cannot write to {str(path)!r}. Nothing was changed; free some space and retry."
    if exc.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
        return f"{str(path)!r} is on a read-only disk or not writable by this user. Nothing was changed."
    return f"Cannot write to {str(path)!r}: {exc.strerror or exc}. Nothing was changed."


def _json_default(obj: Any) -> Any:
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (np.floating,)):
        return float(obj)
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")
