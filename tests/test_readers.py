"""The reader's name is normalised in one place (cxr_core.readers) and every record goes through it: the case store
keeps a stripped name, or "unsigned" where a signature is not needed, and refuses an unsigned review."""

from __future__ import annotations

import pytest

from cxr_core.errors import CXRError
from cxr_core.readers import UNSIGNED, named, signed
from testkit.reviews import stored_result


def test_signed_and_named():
    assert signed("  Dr A  ") == "Dr A" and signed("") == signed("   ") == signed(None) == UNSIGNED
    assert named(" Dr A ", "x") == "Dr A"
    with pytest.raises(CXRError, match="needs a name"):
        named("  ", "needs a name")


def test_the_store_keeps_the_normalised_name(store, tmp_path):
    case_id = stored_result(store, "NORMAL", seed=5)  # kept without a reader: unsigned
    store.review(case_id, "agree", "NORMAL", "  Dr B  ")
    store.export(tmp_path / "out", actor="   ")
    actors = [(e["action"], e["actor"]) for e in store.audit()]
    assert actors == [("create", UNSIGNED), ("review", "Dr B"), ("export", UNSIGNED)]
    assert store.get(case_id)["review"]["reader"] == "Dr B"
    with pytest.raises(CXRError, match="reader's name"):
        store.review(case_id, "agree", "NORMAL", "  ")
