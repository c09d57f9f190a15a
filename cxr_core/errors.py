"""The project's own exceptions: every user-facing failure is one of these, with a sentence a
clinician can read. Nothing else should reach a user."""

from __future__ import annotations

import sys
from typing import Callable
import errno


class CXRError(Exception):
    """Base class: the message is shown to the user as is."""


class InputImageError(CXRError):
    """An input file cannot be read as a radiograph (empty, truncated, not an image, ...)."""


class ConfigError(CXRError):
    """A configuration value is invalid; the message quotes the bad value."""


class ModelError(CXRError):
    """A model cannot be built, loaded or found in the registry."""


class WeightsUnavailableError(ModelError):
    """Pretrained weights were asked for but cannot be had (offline, missing file)."""


class StorageError(CXRError):
    """A file cannot be written (read-only folder, disk full...): the message names the path, whatever it is."""


class RegistryError(StorageError):
    """The model registry cannot be read or written (read-only disk, disk full, corrupt)."""


def report_errors(command: Callable[[], int], interrupted: str = "interrupted", interrupted_status: int = 130) -> int:
    """Run a command-line body: a CXRError becomes one line on stderr and exit status 2, Ctrl-C a message."""
    try:
        return command()
    except CXRError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(interrupted, file=sys.stderr)
        return interrupted_status


def plain_cause(exc: BaseException) -> str:
    """What went wrong, in a few plain words for a message a clinician reads (never the exception's class name)."""

    if isinstance(exc, OSError) and exc.errno in (errno.ENOENT,):
        return "the file or folder does not exist"
    if isinstance(exc, OSError) and exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return "permission denied"
    if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
        return "the disk is full"
    if isinstance(exc, ConnectionError) or "Connection" in type(exc).__name__:
        return "the connection failed"
    if "Timeout" in type(exc).__name__ or isinstance(exc, TimeoutError):
        return "no answer in time"
    if isinstance(exc, OSError):
        return (exc.strerror or "a system error").lower()
    if isinstance(exc, (ValueError, KeyError, IndexError, TypeError)):
        return "its content is not what was expected"
    return "an unexpected problem"
