"""Crash safety of the case store by fault injection: a child process adds one case and kills itself with
`os._exit` at a fixed point of the write. Reopened, the store holds the case complete (its image, heatmap and
one "create" audit event, all in the database) or not at all, and no orphan picture. The random kill -9 test in tests/cases/test_store.py stays as a second line."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

from tests.conftest import PROJECT_ROOT

CHILD = textwrap.dedent('''
    import os, sys
    import numpy as np
    from sqlalchemy import event
    from sqlalchemy.orm import Session
    import cxr_core.cases.store as cases
    from cxr_core.inputs.imaging import LoadedImage
    from cxr_core.model.predict import Prediction

    point = sys.argv[1]
    crash = lambda *a, **k: os._exit(137)
    event.listen(Session, point, crash)
    rng = np.random.default_rng(0)
    image = LoadedImage(pixels=rng.random((32, 32)).astype(np.float32), format="PNG")
    pred = Prediction(file="x.png", label="PNEUMONIA", pneumonia_probability=0.9, subtype="VIRAL",
                      class_probabilities={"NORMAL": 0.1, "BACTERIAL": 0.3, "VIRAL": 0.6}, threshold=0.5,
                      assessed=True, heatmap=rng.random((7, 7)).astype(np.float32), image=image)
    cases.CaseStore.open().add(pred, b"the same bytes every time", "model-x")
    print("returned without crashing")
''')

# after_flush: the pictures are flushed, not the case; before_commit: everything flushed, nothing committed.
POINTS = {"after_flush": False, "before_commit": False, "after_commit": True}


@pytest.mark.parametrize("point", sorted(POINTS))
def test_a_crash_at_each_point_of_a_write_leaves_the_case_complete_or_absent(point, own_app_home):
    from sqlalchemy import func, select
    from sqlalchemy.orm import Session

    from cxr_core.cases.db import Picture
    from cxr_core.cases.store import CaseStore

    res = subprocess.run([sys.executable, "-c", CHILD, point], cwd=PROJECT_ROOT, capture_output=True, text=True,
                         timeout=120, env={**os.environ, "CXR_HOME": str(own_app_home)})
    assert res.returncode == 137, res.stdout + res.stderr  # it crashed where asked, not elsewhere
    store = CaseStore.open()
    listed = store.list()
    creates = [e for e in store.audit() if e["action"] == "create"]
    assert len(listed) == int(POINTS[point])  # committed exactly when the crash came after the commit
    assert len(creates) == len(listed)  # an audit event exactly when the case exists
    if listed:
        case_id = listed[0]["case_id"]
        assert creates[0]["case_id"] == case_id
        stored = store.prediction(case_id)  # the image and heatmap are readable
        assert stored.image.pixels.shape == (32, 32) and stored.heatmap.shape == (7, 7)
        assert (stored.label, stored.subtype) == ("PNEUMONIA", "VIRAL")
    with Session(store.engine) as session:
        assert session.scalar(select(func.count()).select_from(Picture)) == 2 * len(listed)  # no orphan picture
