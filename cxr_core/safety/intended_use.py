"""The intended-use decision: is this input assessed, and with which warnings?

The model is validated for frontal chest radiographs of young children. `assess` is the one
function that decides, and every surface (CLI, app table and CSV, PDF, DICOM exports) shows its
result as it is:
Two tiers. Refuse only what is not a frontal chest radiograph; assess everything else, with a warning
when it is unusual. A guard that silences the sickest children (lines, tubes, leads) is worse than none.
- refused ("not assessed", label null, with reasons): DICOM that is not a projection radiograph
  (by Modality, else SOP class), of another body part, or a lateral view; colour photographs;
  blank images; images whose global layout is not a chest radiograph's (cxr_core.safety.ood pixel check) or
  that a model of what chest films look like cannot explain (cxr_core.safety.appearance autoencoder); an
  adult-looking film only where both refuse it clearly (`chest_check_refusals`);
- assessed with warnings: films the model finds unusual or very unusual (cxr_core.safety.ood feature
  check, graded), films outside the validated population (cxr_core.safety.population: adult-looking or a
  DICOM age), and loader warnings.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from ..inputs.imaging import LoadedImage

# The intended use in words, spelled once here for every surface (card, PDF, DICOM SR, CLI, app).
VALIDATED_AGES = (1.0, 6.0)  # years: [1, 6), the Kermany cohort's "1 to 5 years"
VALIDATED_AGE_RANGE = f"{VALIDATED_AGES[0]:g} to {VALIDATED_AGES[1] - 1:g} years"  # whole years inside [lo, hi)
VALIDATED_POPULATION = f"children aged {VALIDATED_AGE_RANGE}"
OUTSIDE_POPULATION = f"Outside the validated population ({VALIDATED_POPULATION})"
INTENDED_INPUTS = "pediatric frontal chest radiographs"
RESEARCH_USE_ONLY = "research use only"
RESEARCH_ONLY = "Research decision support only"
INTENDED_USE = (
    "Research decision support for pediatric chest radiographs (frontal view). "
    "Not a diagnosis and not a medical device: every result must be reviewed by a qualified clinician."
)
BANNER = f"{RESEARCH_ONLY}: not a diagnosis. {INTENDED_INPUTS.capitalize()}."
TRAINED_ON = f"Trained on pediatric ({VALIDATED_AGE_RANGE}) frontal chest radiographs from one centre"
UNKNOWN_ELSEWHERE = "Performance on adults, other views, other hospitals or other devices is unknown."
NOT_ASSESSED = "Not assessed: this input is outside the intended use"

PROJECTION_MODALITIES = ("CR", "DX", "DR", "RG")
# Computed Radiography; Digital X-Ray for presentation / for processing.
PROJECTION_SOP_CLASSES = ("1.2.840.10008.5.1.4.1.1.1", "1.2.840.10008.5.1.4.1.1.1.1", "1.2.840.10008.5.1.4.1.1.1.1.1")
LATERAL_VIEWS = ("LL", "RL", "LAT", "LATERAL", "LLD", "RLD")
CHEST_WORDS = ("CHEST", "THORAX", "LUNG", "TORSO")
MAX_COLOURFULNESS = 0.04  # radiographs saved as RGB sit near 0; photographs far above
MIN_STD = 0.01
FAILED_EXPOSURE = "The image is almost uniform (blank or failed exposure)."


def not_a_chest_film(reasons: Sequence[str]) -> bool:
    """A refusal because the input is not a frontal chest film at all (a photograph, CT, a lateral view, another
    body part): it needs no read, unlike a blank chest exposure, which needs a repeat."""
    return any(r != FAILED_EXPOSURE for r in reasons)


# An adult-looking film both chest checks refuse is still refused as a foreign input only when, together, they
# place it clearly outside: their joint excess at least this (each check at 1.41 x its threshold, or one at 2 x while
# the other just refuses). bench/ood.py prints the highest joint excess among the adult reference films (children's
# thresholds, never fitted on adults) and the lowest among the foreign images the population check calls adult: the
# margin sits between them.
ADULT_FOREIGN_MARGIN = 2.0


@dataclass(frozen=True)
class ChestCheck:
    """One image check's answer to "is this a chest film at all?": why it refuses (empty: it passes), and its
    excess, the highest ratio of one of its scores to that score's threshold (above 1 where it refuses)."""

    reasons: tuple[str, ...] = ()
    excess: float = 0.0


def joint_excess(layout: ChestCheck, appearance: ChestCheck) -> float:
    """How far the two chest checks together place a film outside chest films: the product of their excesses where
    both refuse it, else 0."""
    return layout.excess * appearance.excess if layout.reasons and appearance.reasons else 0.0


def chest_check_refusals(layout: ChestCheck | None, appearance: ChestCheck | None,
                         outside_population: bool) -> list[str]:
    """The refusals of the two image checks of "is this a chest film at all?" (the layout of its thumbnail and the
    chest-appearance autoencoder; None: the model lacks that check), both fitted on children's films. An adult's
    chest film is a chest film whose anatomy either check may find a little unlike a child's: a film outside the
    validated ages (the population check or a DICOM age) is refused only when both refuse it with a joint excess of
    at least ADULT_FOREIGN_MARGIN, and otherwise gets the population warning. Any other film, and every film of a
    model with one check, is refused by either."""
    if (outside_population and layout is not None and appearance is not None
            and joint_excess(layout, appearance) < ADULT_FOREIGN_MARGIN):
        return []
    return [r for check in (appearance, layout) if check is not None for r in check.reasons]


@dataclass(frozen=True)
class Assessment:
    assessed: bool
    reasons: tuple[str, ...] = ()  # why it was not assessed (empty when assessed)
    warnings: tuple[str, ...] = field(default_factory=tuple)


def assess(image: LoadedImage, guard_refusals: Sequence[str] = (), guard_warnings: Sequence[str] = (),
           population_warning: str | None = None) -> Assessment:
    """Decide from the decoded image, the image guards' refusals and graded warnings (cxr_core.safety.ood) and the
    population check."""
    reasons = dicom_refusals(image.metadata) if image.format == "DICOM" else []
    colour = float(image.metadata.get("colourfulness", 0.0))
    if colour > MAX_COLOURFULNESS:
        reasons.append("This is a colour image, not a radiograph: a photograph or a "
                       "screenshot is not assessed.")
    if float(np.std(image.pixels)) < MIN_STD:
        reasons.append(FAILED_EXPOSURE)
    reasons += [r for r in guard_refusals if r not in reasons]
    # The guards' warnings are about a film the model reads; for a refused input they would only add noise.
    warnings = [*image.warnings, *([] if reasons else [*guard_warnings, *([population_warning] if population_warning else [])])]
    return Assessment(not reasons, tuple(reasons), tuple(warnings))


def dicom_refusals(metadata: dict[str, str]) -> list[str]:
    """Reasons a DICOM header alone rules an input out (empty when it may be a frontal chest radiograph)."""
    out = []
    modality = str(metadata.get("Modality", "")).upper()
    sop_class = str(metadata.get("SOPClassUID", ""))
    body = str(metadata.get("BodyPartExamined", "")).upper()
    view = str(metadata.get("ViewPosition", "")).upper()
    if modality and modality not in PROJECTION_MODALITIES + ("OT",):
        out.append(f"DICOM modality {modality!r} is not a projection radiograph "
                   f"({', '.join(PROJECTION_MODALITIES)} expected).")
    elif (modality == "OT" or not modality) and sop_class not in PROJECTION_SOP_CLASSES and \
            not any(w in body for w in CHEST_WORDS):
        out.append(f"DICOM {'secondary capture' if modality == 'OT' else 'object'} (SOP class {sop_class or 'unknown'}) "
                   "is not a chest radiograph.")
    if body and not any(w in body for w in CHEST_WORDS):
        out.append(f"DICOM body part {body!r} is not the chest.")
    if view in LATERAL_VIEWS:
        out.append(f"Lateral view (ViewPosition {view!r}): only frontal (PA/AP) chest radiographs are assessed.")
    return out
