"""The shift stress suite and the robust threshold policy, on tiny synthetic data."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from cxr_core.validation import metrics as M
from cxr_core.config import AugmentConfig, load_config
from cxr_core.inputs.preprocess import Preprocess
from cxr_core.inputs.shifts import SHIFTS, image_rng
from cxr_core.model.evidence import StressCondition
from cxr_core.validation.stress import conditions, score_conditions, stress_table, worst_case


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
    augment = load_config(Path(__file__).resolve().parents[2] / "train" / "configs" / "shipped.toml").augment
    held_out = [s.name for s in SHIFTS.values() if not s.in_training_augmentation(augment)]
    assert len(held_out) >= 3, held_out


@pytest.mark.parametrize("augment, expected", [
    (AugmentConfig(), {"window", "geometry"}),  # blur defaults to 0
    (AugmentConfig(blur=0.3, borders=0.2, burned_in_text=0.2),
     {"window", "blur", "geometry", "border", "text", "unsharp", "annotation"}),
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


def _task(n: int, size: int, seed: int, film) -> tuple[list[np.ndarray], np.ndarray]:
    """`n` synthetic films, alternately negative and positive: `film(rng, positive, yy, xx)` draws one."""
    rng = np.random.default_rng(seed)
    labels = np.array([i % 2 for i in range(n)])
    yy, xx = np.mgrid[:size, :size]
    return [film(rng, y, yy, xx).astype(np.float32) for y in labels], labels


def _blob_task(n: int = 40, size: int = 96) -> tuple[list[np.ndarray], np.ndarray]:
    """Flat images; the positives carry a faint blob (easy when clean, hard under strong noise)."""
    def film(rng, y, yy, xx):
        cy, cx = rng.integers(20, size - 20, 2)
        blob = 0.04 * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * (size / 24) ** 2)) if y else 0.0
        return 0.4 + blob + 0.005 * rng.standard_normal((size, size))

    return _task(n, size, 1, film)


def _blob_score(batch: np.ndarray) -> np.ndarray:
    """A fixed 'model': the peak of a lightly smoothed image finds the blob."""
    return np.array([cv2.GaussianBlur(x[..., 0], (0, 0), 1.0).max() for x in batch])


def _textured_task(n: int = 120, size: int = 96) -> tuple[list[np.ndarray], np.ndarray]:
    """Films of fine texture (vessels, ribs); the positives carry a hazy opacity that damps the texture."""
    def film(rng, y, yy, xx):
        tex = cv2.GaussianBlur(rng.standard_normal((size, size)).astype(np.float32), (0, 0), 1.2)
        tex = rng.uniform(0.09, 0.14) * tex / tex.std()
        cy, cx = rng.integers(30, size - 30, 2)
        m = np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * (size / 5) ** 2)) if y else 0.0
        return np.clip(0.45 + tex * (1 - 0.45 * m) + 0.1 * m, 0, 1)

    return _task(n, size, 2, film)


def _haze_score(batch: np.ndarray) -> np.ndarray:
    """A 'model' that reads global haze as pneumonia (what the outside evaluation saw): less edge energy, higher P."""
    return np.array([1.0 - np.abs(cv2.Laplacian(x[..., 0], cv2.CV_32F)).mean() for x in batch])


def _stressed_rows(images, labels, score, shift: str) -> dict[str, StressCondition]:
    scores = score_conditions(images, Preprocess(96, intensity="none"), score, conditions([shift]), batch_size=32)
    threshold = M.choose_threshold(labels, scores["clean"], "sensitivity", 0.95)
    return {r.condition: r for r in stress_table(labels, scores, threshold)}


@pytest.mark.parametrize("shift", ["soft", "glare", "unsharp", "tone_curve"])
def test_each_photometric_acquisition_shift_hurts_a_model_that_reads_haze_at_every_severity(shift):
    images, labels = _textured_task()
    rows = _stressed_rows(images, labels, _haze_score, shift)
    for severity in (1, 2, 3):
        row, clean = rows[f"{shift}:{severity}"], rows["clean"]
        assert (row.specificity < clean.specificity - 0.05 or row.auc < clean.auc - 0.05), (severity, row)


@pytest.mark.parametrize("shift", ["annotation", "devices"])
def test_burned_in_annotations_and_devices_hurt_a_model_that_reads_bright_marks_at_every_severity(shift):
    images, labels = _blob_task()
    rows = _stressed_rows(images, labels, _blob_score, shift)
    for severity in (1, 2, 3):
        row, clean = rows[f"{shift}:{severity}"], rows["clean"]
        assert row.specificity < clean.specificity - 0.2 and row.auc < clean.auc - 0.2, (severity, row)


def test_the_acquisition_family_is_held_out_of_the_shipped_augmentation_where_no_layer_varies_it():
    from cxr_core.inputs.shifts import ACQUISITION

    augment = load_config(Path(__file__).resolve().parents[2] / "train" / "configs" / "shipped.toml").augment
    assert set(ACQUISITION) == {"soft", "glare", "unsharp", "tone_curve", "annotation"}
    held_out = {name for name in ACQUISITION if not SHIFTS[name].in_training_augmentation(augment)}
    assert {"soft", "glare", "tone_curve"} <= held_out  # no augmentation layer varies them
    assert "unsharp" not in held_out  # blur augmentation varies it


def test_shift_aware_policy_picks_the_highest_threshold_meeting_both_sensitivity_floors():
    y = np.array([0] * 100 + [1] * 100)
    clean = np.r_[np.linspace(0.0, 0.5, 100), np.linspace(0.4, 1.0, 100)]
    soft = clean + np.where(y == 0, 0.2, -0.3)  # under this shift normals look sicker and positives less sure
    generic = clean - 0.6  # a shift the training augmentation varied: not in the policy
    p_by = {"clean": clean, "soft:2": soft, "soft:3": soft - 0.5, "noise:2": generic}
    threshold, ev = M.shift_aware_threshold(y, p_by, 0.95, 0.90, held_out=["soft"], max_severity=2)
    assert ev.binding_condition == "soft:2" and set(ev.per_condition_thresholds) == {"clean", "soft:2"}
    # documented: the highest threshold at which clean sensitivity >= 0.95 and soft:2 sensitivity >= 0.90
    positives_soft = np.sort(soft[y == 1])
    expected = (positives_soft[10] + positives_soft[9]) / 2  # keeps 90 of 100 positives, halfway to the next score
    assert threshold == pytest.approx(expected)
    assert M.binary_at_threshold(y, soft, threshold)["sensitivity"] >= 0.90
    assert M.binary_at_threshold(y, clean, threshold)["sensitivity"] >= 0.95
    assert ev.clean_only_threshold > threshold and ev.specificity_cost_of_shift_floor > 0
    assert "costs" in ev.trade and f"{threshold:.3f}" in ev.trade
    # Without the shift the clean target binds and nothing is traded.
    t_clean, ev_clean = M.shift_aware_threshold(y, {"clean": clean}, 0.95, 0.90, held_out=["soft"])
    assert ev_clean.binding_condition == "clean" and ev_clean.specificity_cost_of_shift_floor == 0
    assert t_clean == pytest.approx(M.choose_threshold(y, clean, "sensitivity", 0.95))


def test_a_shift_that_makes_the_task_harder_lowers_the_reported_auc():
    images, labels = _blob_task()
    keys = conditions(["noise"], [1, 3])
    scores = score_conditions(images, Preprocess(64, intensity="none"), _blob_score, keys, batch_size=16)
    rows = {r.condition: r for r in stress_table(labels, scores, threshold=0.5, augment=AugmentConfig(blur=0.3))}
    assert rows["clean"].auc > 0.95
    assert rows["noise:3"].auc < rows["clean"].auc - 0.1
    assert rows["noise:3"].in_training_augmentation is False and rows["clean"].severity == 0
    worst = worst_case(list(rows.values()), max_severity=3)
    assert worst.auc.condition == "noise:3" and worst.auc.value == rows["noise:3"].auc


def test_robust_threshold_keeps_the_target_sensitivity_under_every_moderate_shift():
    rng = np.random.default_rng(0)
    y = np.array([0] * 200 + [1] * 200)
    clean = np.where(y == 1, rng.uniform(0.5, 1.0, 400), rng.uniform(0.0, 0.6, 400))
    moderate = np.where(y == 1, clean - 0.2, clean)  # positives look less sure under this shift
    severe = np.where(y == 1, clean - 0.5, clean)  # beyond the policy's reach
    p_by = {"clean": clean, "noise:2": moderate, "noise:3": severe}
    threshold, evidence = M.robust_threshold(y, p_by, target_sensitivity=0.95, max_severity=2)
    assert evidence.binding_condition == "noise:2"
    assert threshold < M.choose_threshold(y, clean, "sensitivity", 0.95)
    for key in ("clean", "noise:2"):
        assert M.binary_at_threshold(y, p_by[key], threshold)["sensitivity"] >= 0.95
    assert "noise:3" not in evidence.per_condition_thresholds


def test_stress_cli_reports_every_condition_as_json(tiny_model_dir, tiny_data, capsys):
    from cxr_core.cli import main

    code = main(["stress", str(tiny_data), "--model", str(tiny_model_dir), "--shifts", "jpeg,text,window",
                 "--severities", "1,3", "--json"])
    out = json.loads(capsys.readouterr().out)
    assert code == 0 and out["n"] == 48
    assert [r["condition"] for r in out["conditions"]] == ["clean", "jpeg:1", "jpeg:3", "text:1", "text:3",
                                                           "window:1", "window:3"]
    assert set(out["worst_moderate"]) >= {"auc", "sensitivity", "specificity"}
    # "in aug." follows the model's own card: the tiny recipe varies contrast (window), not JPEG or text.
    in_aug = {r["shift"]: r["in_training_augmentation"] for r in out["conditions"]}
    assert in_aug == {"clean": None, "jpeg": False, "text": False, "window": True}


def test_stress_cli_rejects_a_bad_severity_without_a_traceback(tiny_data, capsys):
    from cxr_core.cli import main

    assert main(["stress", str(tiny_data), "--severities", "2,9"]) == 2
    assert "severity 9" in capsys.readouterr().err
