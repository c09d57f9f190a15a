"""Import Keras without the optional integrations it loads at start-up when they are installed.

Keras 3 imports IPython, matplotlib, scikit-learn and pandas eagerly, when present, for its notebook file
editor, plotting helpers, scikit-learn wrappers and DataFrame inputs. This product uses none of them through
Keras, and here they cost 2-3 s of a 5-7 s `import keras` (bench/inference.py measures the cold start).
`import_keras` hides them from Keras' first import, in this thread only, so Keras records them as absent;
everyone else imports them as usual. When Keras is already imported it is returned as it is.

It is also the one place that loads a saved `.keras` file.
"""

from __future__ import annotations

import importlib.abc
import sys
import threading
from pathlib import Path
from types import ModuleType
from typing import Any

from ..errors import ModelError

OPTIONAL_INTEGRATIONS = ("IPython", "matplotlib", "sklearn", "pandas")


class _HideFromThisThread(importlib.abc.MetaPathFinder):
    """Makes `import NAME` fail with ImportError for the named top-level packages, only in one thread."""

    def __init__(self, names: tuple[str, ...]):
        self.names, self.thread = set(names), threading.get_ident()

    def find_spec(self, fullname, path, target=None):  # noqa: ANN001, D102
        if threading.get_ident() == self.thread and fullname.partition(".")[0] in self.names:
            raise ModuleNotFoundError(f"{fullname} is hidden while Keras is imported", name=fullname)
        return None

_LOAD_LOCK = threading.Lock()  # Keras' loader is not thread-safe; the app's sessions share one process


def import_keras() -> ModuleType:
    """The `keras` module, imported (the first time) without its optional integrations not yet loaded."""
    if "keras" in sys.modules:
        return sys.modules["keras"]
    finder = _HideFromThisThread(tuple(n for n in OPTIONAL_INTEGRATIONS if n not in sys.modules))
    sys.meta_path.insert(0, finder)
    try:
        import keras  # lazy: heavy
    finally:
        sys.meta_path.remove(finder)
    return keras


def load_keras_model(path: str | Path) -> Any:
    """Load a `.keras` file with safe_mode=True (no arbitrary code), uncompiled."""
    keras = import_keras()
    try:
        with _LOAD_LOCK:
            return keras.models.load_model(path, compile=False, safe_mode=True)
    except Exception as exc:
        raise ModelError(f"The model file {str(path)!r} cannot be loaded: {type(exc).__name__}: {exc}") from None
