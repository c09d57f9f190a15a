"""How a model's guards are judged (cxr_core.fitting.guards): each held-out pediatric film by thresholds set without its
patient, every guard's verdict combined into refused / warned / flagged, and the held-out split read from the model's
own card (no patient on both sides). The appearance and population checks are stand-ins whose scores the test sets."""

from __future__ import annotations

import numpy as np
import pytest

from cxr_core.safety.appearance import RULES
from cxr_core.fitting.guards import held_out_flags
from cxr_core.validation.dataset import held_out_split
from cxr_core.safety.ood import OODDetector
from testkit.synthetic import non_xray, phantom_cxr

SIZE = 48


class Appearance:
    """An appearance check whose reconstruction score is set per film (its other signals never flag)."""

    def __init__(self, reconstruction):
        self.reconstruction = np.asarray(reconstruction, float)

    def scores(self, images):
        assert len(images) == len(self.reconstruction)
        return {k: self.reconstruction if k == "reconstruction" else np.zeros(len(images)) for k in RULES}


class Population:
    def __init__(self, flags):
        self._flags = np.asarray(flags, bool)

    def flags(self, images):
        return self._flags


@pytest.fixture(scope="module")
def ood():
    rng = np.random.default_rng(0)
    films = np.stack([phantom_cxr(SIZE, rng, i % 3) for i in range(60)])
    return OODDetector.fit(films[:40], rng.normal(size=(40, 4)), films[40:], rng.normal(size=(20, 4)), n_components=8)


def test_each_guards_verdict_is_cross_fitted_and_combined(ood):
    rng = np.random.default_rng(1)
    held = np.stack([phantom_cxr(SIZE, rng, i % 3) for i in range(10)] + [non_xray("noise", SIZE, rng)] * 2)
    patients = [f"p{i // 2}" for i in range(12)]  # the two noise images are one patient's
    features = np.zeros((12, 4))
    features[3] = 100.0  # one film's model features far from every other's
    appearance = Appearance([1.0] * 8 + [50.0, 50.0] + [1.0, 1.0])  # patient p4 is unlike every other patient
    population = [False] * 5 + [True] + [False] * 4 + [True, False]  # film 10: refused by the layout alone, adult-looking
    flags = held_out_flags(ood, appearance, Population(population), held, features, patients)
    assert flags["refused_layout"][10:].all() and not flags["refused_layout"][:10].any()
    assert flags["refused_appearance"].tolist() == [False] * 8 + [True, True] + [False, False]
    either = flags["refused_layout"] | flags["refused_appearance"]
    assert flags["refused"].tolist() == [bool(r) and i != 10 for i, r in enumerate(either)]  # the adult rule waives 10
    assert flags["unusual"][3] and flags["very_unusual"][3] and flags["unusual"].sum() == 1
    assert flags["population"].tolist() == population
    assert flags["flagged"].tolist() == [i in (3, 5, 8, 9, 10, 11) for i in range(12)]


def test_without_appearance_or_population_checks_they_flag_nothing(ood):
    rng = np.random.default_rng(2)
    held = np.stack([phantom_cxr(SIZE, rng, i % 3) for i in range(6)])
    flags = held_out_flags(ood, None, None, held, np.zeros((6, 4)), [f"p{i}" for i in range(6)])
    assert not flags["refused_appearance"].any() and not flags["population"].any()
    assert np.array_equal(flags["flagged"], flags["refused"] | flags["unusual"] | flags["very_unusual"])


def test_the_held_out_split_is_the_models_own_with_no_patient_on_both_sides(tiny_model_dir, tiny_data):
    from cxr_core.validation.dataset import index_dataset

    train, held = held_out_split(tiny_model_dir)
    assert train and held
    assert not {r.patient for r in train} & {r.patient for r in held}
    assert sorted(str(r.path) for r in train + held) == sorted(str(r.path) for r in index_dataset(tiny_data))
    again = held_out_split(tiny_model_dir, tiny_data)  # the same split when the folder is named
    assert [r.path for r in again[1]] == [r.path for r in held]


def test_held_out_rates_count_a_refusal_as_the_product_decides_it():
    """refused_by_chest_checks applies the product's one rule (safety.intended_use.chest_check_refusals) to each
    check's excess (above 1: it refuses): a child's film is refused by either chest check, an adult-looking one only
    by both, together by ADULT_FOREIGN_MARGIN."""
    from cxr_core.fitting.guards import refused_by_chest_checks

    layout = np.array([1.5, 0.5, 1.5, 1.5, 0.5, 1.2, 1.6])
    appearance = np.array([0.5, 1.5, 1.5, 0.5, 0.5, 1.2, 1.6])
    adult = np.array([0, 0, 1, 1, 1, 1, 1], bool)
    assert refused_by_chest_checks(layout, appearance, adult).tolist() == [True, True, True, False, False, False, True]
    # A model without the appearance check has one chest check: it refuses adult-looking films too.
    assert refused_by_chest_checks(layout, None, adult).tolist() == [True, False, True, True, False, True, True]
