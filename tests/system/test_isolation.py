"""The suite never touches the user's own settings: a workstation's CXR_DATABASE_URL (a shared PostgreSQL in a
real deployment), CXR_REGISTRY or CXR_HOME are removed before any test or fixture runs."""

from __future__ import annotations

import hashlib
import os
import sqlite3
import subprocess
import sys

from tests.conftest import PROJECT_ROOT


def test_no_cxr_variable_from_the_shell_reaches_a_test(own_app_home):
    assert {k for k in os.environ if k.startswith("CXR_") and not k.startswith("CXR_BROWSER_")} == {"CXR_HOME"}
    assert os.environ["CXR_HOME"] == str(own_app_home)


def test_a_sentinel_database_named_in_the_shell_is_untouched_by_the_case_store_tests(tmp_path):
    sentinel = tmp_path / "sentinel.db"
    with sqlite3.connect(sentinel) as db:
        db.execute("CREATE TABLE hospital (row TEXT)")
        db.execute("INSERT INTO hospital VALUES ('real data')")
    before = hashlib.sha256(sentinel.read_bytes()).hexdigest()
    registry, home = tmp_path / "sentinel_registry", tmp_path / "sentinel_home"
    env = {**os.environ, "CXR_DATABASE_URL": f"sqlite:///{sentinel}", "CXR_REGISTRY": str(registry),
           "CXR_HOME": str(home), "CXR_STORE_IDENTIFIERS": "1", "TF_CPP_MIN_LOG_LEVEL": "3"}
    res = subprocess.run([sys.executable, "-m", "pytest", "-q", "-n", "0", "-p", "no:randomly", "-p", "no:cacheprovider",
                          "tests/cases/test_store.py", "-k", "stored_once or append_only or identifiers_are_stored"],
                         cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    assert " passed" in res.stdout
    assert hashlib.sha256(sentinel.read_bytes()).hexdigest() == before
    assert not registry.exists() and not home.exists()
