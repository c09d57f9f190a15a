"""The shift stress suite and the robust threshold policy, on tiny synthetic data."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from cxr_core import metrics as M
from cxr_core.config import AugmentConfig, load_config
from cxr_core.preprocess import Preprocess
from cxr_core.shifts import SHIFTS, image_rng
from cxr_core.stress import conditions, score_conditions, stress_table, worst_case


@pytest.mark.parametrize("name", sorted(SHIFTS))
@pytest.mark.parametrize("size", [(80, 80), (90, 130)])
def test_every_shift_keeps_shape_and_range_is_deterministic_and_changes_the_image(name, size):
    gray = np.random.default_rng(0).uniform(0.1, 0.9, size).astype(np.float32)
    gray = cv2.GaussianBlur(gray, (0, 0), 3)
    a = SHIFTS[name](gray, 2, image_rng(name, 2, 7))
    b = SHIFTS[name](gray, 2, image_rng(name, 2, 7))
    assert a.shape == gray.shape and a.dtype == np.float32 and 0.0 <= a.min() <= a.max() <= 1.0
    np.testing.assert_array_equal(a, b)
    assert np.abs(a - gray).mean() > 1e-4


def test_the_shipped_recipe_keeps_at_least_three_shift_kinds_out_of_training_augmentation():
    augment = load_config(Path(__file__).resolve().parents[1] / "train" / "configs" / "shipped.toml").augment
    held_out = [s.name for s in SHIFTS.values() if not s.in_training_augmentation(augment)]
    assert len(held_out) >= 3, held_out


@pytest.mark.parametrize("augment, expected", [
    (AugmentConfig(), {"window", "geometry"}),  # blur defaults to 0
    (AugmentConfig(blur=0.3, borders=0.2, burned_in_text=0.2), {"window", "blur", "geometry", "border", "text"}),
    (AugmentConfig(strength=0.0, borders=0.2), set()),
    (AugmentConfig(contrast=0.0, brightness=0.0, rotation=0.0, translate=0.0, zoom=0.0, borders=0.5), {"border"}),
])
def test_in_training_augmentation_follows_the_model_s_augment_config(augment, expected):
    assert {s.name for s in SHIFTS.values() if s.in_training_augmentation(augment)} == expected


@pytest.mark.parametrize("bad, match", [({"shifts": ["fog"]}, "'fog'"), ({"severities": [0]}, "0"), ({"severities": [4]}, "4")])
def test_conditions_reject_bad_names_and_severities(bad, match):
    with pytest.raises(ValueError, match=match):
        conditions(**bad)
    with pytest.raises(ValueError, match="5"):
        SHIFTS["noise"](np.zeros((70, 70), np.float32), 5, image_rng("noise", 1, 0))


def _blob_task(n: int = 40, size: int = 96) -> tuple[list[np.ndarray], np.ndarray]:
    """Flat images; the positives carry a faint blob (easy when clean, hard under strong noise)."""
    rng = np.random.default_rng(1)
    labels = np.array([i % 2 for i in range(n)])
    yy, xx = np.mgrid[:size, :size]
    images = []
    for y in labels:
        cy, cx = rng.integers(20, size - 20, 2)
        blob = 0.04 * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * (size / 24) ** 2)) if y else 0.0
        images.append((0.4 + blob + 0.005 * rng.standard_normal((size, size))).astype(np.float32))
    return images, labels


def _blob_score(batch: np.ndarray) -> np.ndarray:
    """A fixed 'model': the peak of a lightly smoothed image finds the blob."""
    return np.array([cv2.GaussianBlur(x[..., 0], (0, 0), 1.0).max() for x in batch])


def test_a_shift_that_makes_the_task_harder_lowers_the_reported_auc():
    images, labels = _blob_task()
    keys = conditions(["noise"], [1, 3])
    scores = score_conditions(images, Preprocess(64, intensity="none"), _blob_score, keys, batch_size=16)
    rows = {r["condition"]: r for r in stress_table(labels, scores, threshold=0.5, augment=AugmentConfig(blur=0.3))}
    assert rows["clean"]["auc"] > 0.95
    assert rows["noise:3"]["auc"] < rows["clean"]["auc"] - 0.1
    assert rows["noise:3"]["in_training_augmentation"] is False and rows["clean"]["severity"] == 0
    worst = worst_case(list(rows.values()), max_severity=3)
    assert worst["auc"]["condition"] == "noise:3"


def test_robust_threshold_keeps_the_target_sensitivity_under_every_moderate_shift():
    rng = np.random.default_rng(0)
    y = np.array([0] * 200 + [1] * 200)
    clean = np.where(y == 1, rng.uniform(0.5, 1.0, 400), rng.uniform(0.0, 0.6, 400))
    moderate = np.where(y == 1, clean - 0.2, clean)  # positives look less sure under this shift
    severe = np.where(y == 1, clean - 0.5, clean)  # beyond the policy's reach
    p_by = {"clean": clean, "noise:2": moderate, "noise:3": severe}
    threshold, evidence = M.robust_threshold(y, p_by, target_sensitivity=0.95, max_severity=2)
    assert evidence["binding_condition"] == "noise:2"
    assert threshold < M.choose_threshold(y, clean, "sensitivity", 0.95)
    for key in ("clean", "noise:2"):
        assert M.binary_at_threshold(y, p_by[key], threshold)["sensitivity"] >= 0.95
    assert "noise:3" not in evidence["per_condition_thresholds"]


def test_stress_cli_reports_every_condition_as_json(tiny_model_dir, tiny_data, capsys):
    from cxr_core.cli import main

    code = main(["stress", str(tiny_data), "--model", str(tiny_model_dir), "--shifts", "jpeg,text",
                 "--severities", "1,3", "--json"])
    out = json.loads(capsys.readouterr().out)
    assert code == 0 and out["n"] == 48
    assert [r["condition"] for r in out["conditions"]] == ["clean", "jpeg:1", "jpeg:3", "text:1", "text:3"]
    assert set(out["worst_moderate"]) >= {"auc", "sensitivity", "specificity"}


def test_stress_cli_rejects_a_bad_severity_without_a_traceback(tiny_data, capsys):
    from cxr_core.cli import main

    assert main(["stress", str(tiny_data), "--severities", "2,9"]) == 2
    assert "severity 9" in capsys.readouterr().err
