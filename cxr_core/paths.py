"""Where the app keeps what it writes at run time: `$CXR_HOME`, by default the platform's user data
folder (platformdirs), never the git checkout and never a registered model's folder."""

from __future__ import annotations

import os
from pathlib import Path


def app_home() -> Path:
    """`$CXR_HOME` if set, else e.g. ~/.local/share/cxr-assistant on Linux."""
    home = os.environ.get("CXR_HOME")
    if home:
        return Path(home).expanduser()
    import platformdirs

    return Path(platformdirs.user_data_dir("cxr-assistant", appauthor=False))


def evaluations_dir(model_id: str) -> Path:
    """Saved evaluations of one model, keyed by its id (the model folder itself never changes)."""
    return app_home() / "evaluations" / model_id
