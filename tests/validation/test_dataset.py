"""Dataset indexing: labels and patients from file names; splits never leak a patient."""

from __future__ import annotations

import numpy as np
import pytest

from cxr_core.validation.dataset import balanced_indices, class_counts, grouped_folds, grouped_split, index_dataset, parse_name

from tests.conftest import shared_data_or_skip


@pytest.mark.parametrize("folder, name, expected", [
    ("NORMAL", "IM-0115-0001.jpeg", (0, "IM-0115")),
    ("NORMAL", "NORMAL2-IM-1427-0001.jpeg", (0, "N2-1427")),
    ("PNEUMONIA", "person1000_bacteria_2931.jpeg", (1, "P1000")),
    ("PNEUMONIA", "person1000_virus_1681.jpeg", (2, "P1000")),
    ("PNEUMONIA", "scan.jpeg", None),
])
def test_parse_name(folder, name, expected):
    assert parse_name(folder, name) == expected


def _patients(records, idx):
    return {records[i].patient for i in idx}


def test_tiny_folder_split_is_grouped_and_stratified(tiny_data):
    records = index_dataset(tiny_data)
    assert class_counts(records) == {"NORMAL": 16, "BACTERIAL": 16, "VIRAL": 16}
    tr, va = grouped_split(records, 0.25, seed=0)
    assert not _patients(records, tr) & _patients(records, va)
    assert len(tr) + len(va) == len(records)
    assert {records[i].label for i in va} == {0, 1, 2}


def test_balancing_cases():
    labels = np.array([0] * 10 + [1] * 30 + [2] * 20)
    assert len(balanced_indices(labels, "none", 0)) == 60
    assert len(balanced_indices(labels, "augment_x4", 0)) == 240
    bal = balanced_indices(labels, "balanced", 0)
    assert np.bincount(labels[bal]).tolist() == [30, 30, 30]


def test_real_training_split_counts_and_five_fold_cv_without_leakage():
    records = index_dataset(shared_data_or_skip())
    assert len(records) == 5216
    assert class_counts(records) == {"NORMAL": 1341, "BACTERIAL": 2530, "VIRAL": 1345}
    folds = grouped_folds(records, 5, seed=0)
    seen = np.zeros(len(records), int)
    for tr, va in folds:
        assert not _patients(records, tr) & _patients(records, va)
        seen[va] += 1
        share = np.bincount([records[i].label for i in va], minlength=3) / len(va)
        assert np.allclose(share, [0.257, 0.485, 0.258], atol=0.05)  # stratified
    assert (seen == 1).all()
