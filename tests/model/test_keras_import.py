"""Keras for serving: imported without its optional integrations, which stay importable for everyone else."""

from __future__ import annotations

import subprocess
import sys
import threading

import pytest

from cxr_core.model.keras_import import _HideFromThisThread

from tests.conftest import PROJECT_ROOT

PROBE = """
import sys
from cxr_core.model.keras_import import import_keras, OPTIONAL_INTEGRATIONS
keras = import_keras()
assert keras.layers.Dense(2).units == 2
print(",".join(sorted(n for n in OPTIONAL_INTEGRATIONS if n in sys.modules)) or "none")
import sklearn.metrics, pandas
print(sklearn.metrics.accuracy_score([0, 1], [0, 1]), len(pandas.DataFrame({"a": [1, 2]})))
"""


def test_a_fresh_process_imports_keras_without_the_integrations_and_can_still_import_them():
    out = subprocess.run([sys.executable, "-c", PROBE], cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=300,
                         env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(PROJECT_ROOT), "TF_CPP_MIN_LOG_LEVEL": "3"})
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == ["none", "1.0", "2"]


def test_the_hiding_applies_to_the_importing_thread_only():
    finder = _HideFromThisThread(("somepkg",))
    with pytest.raises(ModuleNotFoundError, match="somepkg.sub"):
        finder.find_spec("somepkg.sub", None)
    assert finder.find_spec("otherpkg", None) is None
    seen = []
    worker = threading.Thread(target=lambda: seen.append(finder.find_spec("somepkg", None)))
    worker.start()
    worker.join()
    assert seen == [None]
