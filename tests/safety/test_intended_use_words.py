"""The intended use in words (cxr_core.safety.intended_use): the age range is built from VALIDATED_AGES, the rule
the population check applies, and no other source file types it again."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from cxr_core.safety import intended_use as IU
from cxr_core.safety.population import ADULT_IMAGE_REASON, age_warning

ROOT = Path(__file__).resolve().parents[2]


def test_the_age_range_in_words_is_the_rule_the_population_check_applies():
    first, last = (float(n) for n in re.fullmatch(r"(\d+) to (\d+) years", IU.VALIDATED_AGE_RANGE).groups())
    assert (first, last) == (IU.VALIDATED_AGES[0], IU.VALIDATED_AGES[1] - 1) == (1.0, 5.0)
    assert age_warning(first) is None and age_warning(last + 0.99) is None  # every age the words name: no warning
    assert age_warning(first - 0.01) and age_warning(last + 1)  # just outside either end: a warning
    assert IU.OUTSIDE_POPULATION == "Outside the validated population (children aged 1 to 5 years)"


@pytest.mark.parametrize("age", [0.5, 6.0, 40.0])
def test_every_population_warning_says_the_validated_population(age):
    assert age_warning(age).startswith(IU.OUTSIDE_POPULATION + ":")
    assert ADULT_IMAGE_REASON.startswith(IU.OUTSIDE_POPULATION + ":")


def test_the_texts_read_as_before():
    assert IU.TRAINED_ON == "Trained on pediatric (1 to 5 years) frontal chest radiographs from one centre"
    assert IU.BANNER == "Research decision support only: not a diagnosis. Pediatric frontal chest radiographs."
    assert IU.INTENDED_USE.startswith("Research decision support for pediatric chest radiographs (frontal view).")


def test_no_other_source_file_types_the_intended_use_again():
    """Code quotes the constants; only intended_use.py spells them (generated docs may quote the result)."""
    pattern = re.compile(r"1 to 5|aged 1|pediatric frontal|pediatric chest radiographs \(frontal|decision support only",
                         re.IGNORECASE)
    own = ROOT / "cxr_core" / "safety" / "intended_use.py"
    found = [f"{f.relative_to(ROOT)}:{n}" for package in ("cxr_core", "cxr_app", "app_pages", "train")
             for f in sorted((ROOT / package).rglob("*.py")) if f != own
             for n, line in enumerate(f.read_text().splitlines(), 1) if pattern.search(line)]
    assert not found, found
