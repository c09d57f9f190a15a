"""The shipped model on real films: the hard pediatric check set (tubes, ECG leads, rotation, markers, soft
exposures, picked by eye from the training split; names only in bench/checksets) is assessed, never refused."""

from __future__ import annotations

import pytest

from tests.conftest import PROJECT_ROOT, SHIPPED_REGISTRY, shared_data_or_skip

CHECK_SET = PROJECT_ROOT / "bench" / "checksets" / "hard_pediatric.txt"


def _names() -> list[str]:
    return [line.split("\t")[0] for line in CHECK_SET.read_text().splitlines() if line and not line.startswith("#")]


def test_the_check_set_lists_names_only_with_what_was_seen():
    lines = [line for line in CHECK_SET.read_text().splitlines() if line and not line.startswith("#")]
    assert len(lines) >= 40 and all(line.count("\t") == 1 and line.split("\t")[1].strip() for line in lines)
    assert all(name.split("/")[0] in ("NORMAL", "PNEUMONIA") and name.endswith(".jpeg") for name in _names())
    assert sum("tube" in line or "lead" in line or "line" in line for line in lines) >= 10


def test_no_film_of_the_hard_pediatric_check_set_is_refused_by_the_shipped_model():
    from cxr_core.model.predict import Predictor
    from cxr_core.model.registry import Registry

    root = shared_data_or_skip()
    entry = Registry(SHIPPED_REGISTRY).active()
    if entry is None:
        pytest.skip("no shipped model in assets/models")
    predictor = Predictor(entry.path)
    assert predictor.ood is not None and predictor.card.guard_calibration  # screened, by calibrated guards
    refused = [name for name in _names() if not predictor.predict(root / name).assessed]
    assert refused == []
