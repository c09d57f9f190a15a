"""Where the app keeps what it writes at run time: `$CXR_HOME`, by default the platform's user data
folder (platformdirs), never the git checkout and never a registered model's folder."""

from __future__ import annotations

from pathlib import Path
from .settings import current


def app_home() -> Path:
    """`$CXR_HOME` if set, else e.g. ~/.local/share/cxr-assistant on Linux (see settings.py)."""

    return current().home


def evaluations_dir(model_id: str) -> Path:
    """Saved evaluations of one model, keyed by its id (the model folder itself never changes)."""
    return app_home() / "evaluations" / model_id


def legacy_images_dir() -> Path:
    """Where case pictures were files before migration 0004 (now they live in the case database)."""
    return app_home() / "images"


def exports_dir() -> Path:
    """Where an export given as a relative path goes: never the working directory (it may be the checkout)."""
    return app_home() / "exports"


def export_folder(path: str | Path) -> Path:
    """The folder an export writes to: an absolute path (or ~) as given, a relative one under $CXR_HOME/exports."""
    given = Path(str(path).strip()).expanduser()
    return given if given.is_absolute() else exports_dir() / given
