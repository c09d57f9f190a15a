"""Quick-suite counterparts of the slow safety tests, so that the README's quick command (`-m "not slow"`) catches
the breakages `tests/mutations.py` applies too: the case write is one transaction (test_crash_safety.py kills real
processes to prove what this counts), and no CXR_* variable of the shell reaches a test (test_isolation.py runs a
whole pytest in a subprocess to prove the same with a sentinel database)."""

from __future__ import annotations

import os

import numpy as np


def test_no_cxr_variable_from_the_shell_reaches_a_quick_test(own_app_home):
    assert {k for k in os.environ if k.startswith("CXR_") and not k.startswith("CXR_BROWSER_")} == {"CXR_HOME"}
    assert os.environ["CXR_HOME"] == str(own_app_home)


def test_a_case_its_pictures_and_its_create_event_commit_in_one_transaction(own_app_home):
    """One commit per new case, and at that commit the case, its pictures and its "create" event are all pending
    in the same session: a crash can leave it complete or absent, never half written."""
    from sqlalchemy import event
    from sqlalchemy.orm import Session

    from cxr_core.cases.db import AuditEvent, Case, Picture
    from cxr_core.cases.store import CaseStore
    from cxr_core.inputs.imaging import LoadedImage
    from cxr_core.model.predict import Prediction

    store = CaseStore.open()
    commits: list[set[str]] = []  # per transaction: the kinds of rows it wrote
    pending: set[str] = set()

    def before_flush(session, context, instances):
        pending.update(type(o).__name__ for o in session.new)

    def before_commit(session):
        pending.update(type(o).__name__ for o in session.new)
        commits.append(set(pending))
        pending.clear()

    rng = np.random.default_rng(0)
    image = LoadedImage(pixels=rng.random((32, 32)).astype(np.float32), format="PNG")
    pred = Prediction(file="x.png", label="PNEUMONIA", pneumonia_probability=0.9, subtype="VIRAL",
                      class_probabilities={"NORMAL": 0.1, "BACTERIAL": 0.3, "VIRAL": 0.6}, threshold=0.5,
                      assessed=True, heatmap=rng.random((8, 8)).astype(np.float32), image=image)
    event.listen(Session, "before_flush", before_flush)
    event.listen(Session, "before_commit", before_commit)
    try:
        case_id, created = store.add(pred, b"image bytes", "model-x", actor="Dr One")
    finally:
        event.remove(Session, "before_commit", before_commit)
        event.remove(Session, "before_flush", before_flush)
    assert created
    assert len(commits) == 1, f"{len(commits)} transactions for one case"
    assert {Case.__name__, Picture.__name__, AuditEvent.__name__} <= commits[0]
    assert [e["action"] for e in store.audit() if e["case_id"] == case_id] == ["create"]
