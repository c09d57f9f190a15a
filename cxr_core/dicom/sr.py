"""The TID 1500 Measurement Report (Comprehensive SR) of one prediction (`result_sr`), built with highdicom: the
observation context names the model as a device; one measurement group (TID 1501) per finding, each with the
algorithm (TID 4019: name, version, parameters), the source image and its finding type: "Pneumonia" with the
qualitative evaluation present / absent / undetermined (not assessed, with the reasons), its probability, the
operating threshold (its source among the algorithm's parameters) and the etiology (bacteria, virus, or undetermined
when the subtype margin is below the model's), then "Bacterial pneumonia" and "Viral pneumonia" with their
probabilities; the warnings and the intended use."""

from __future__ import annotations

from typing import Any

import highdicom as hd
from pydicom.dataset import Dataset
from pydicom.sr.coding import Code

from ..errors import CXRError
from ..model.card import ModelCard
from ..model.decision import SUBTYPE_UNCERTAIN
from ..model.operating_point import threshold_wording
from ..model.predict import Prediction
from ..safety.intended_use import INTENDED_USE, RESEARCH_USE_ONLY
from .codes import (ABSENT, CAUSES, DEVICE, DISCLAIMER, ETIOLOGY, LUNG, NOT_ASSESSED, NO_UNITS, PNEUMONIA, PRESENT,
                    PROBABILITY, PROCEDURE, SUBTYPE_FINDINGS, THRESHOLD, UNDETERMINED, WARNING, private_scheme)
from .source import MANUFACTURER, SR_SERIES_NUMBER, device_uid, in_source_study, result_uid


def _algorithm(pred: Prediction, card: ModelCard) -> hd.sr.AlgorithmIdentification:
    """TID 4019: the model's name and version; its id and the operating threshold (with whose it is) as parameters."""
    return hd.sr.AlgorithmIdentification(
        name=card.name, version=card.version, manufacturer=MANUFACTURER,
        parameters=[f"model id: {card.model_id}",
                    f"operating threshold on the probability of pneumonia: {pred.threshold:.4f} "
                    f"({threshold_wording(pred.threshold_source)})"])


def _group(source: Dataset, pred: Prediction, card: ModelCard, finding: Code, measurements: list[Any],
           evaluations: list[Any], texts: list[tuple[Code, str]] = (), sites: list[Any] = ()) -> Any:
    """One TID 1501 measurement group about the whole source image; `texts` are TEXT qualitative evaluations
    (row 12: a coded question with a text answer), which highdicom's class does not take itself."""
    group = hd.sr.MeasurementsAndQualitativeEvaluations(
        tracking_identifier=hd.sr.TrackingIdentifier(
            uid=result_uid(source.SOPInstanceUID, card.model_id, f"tracking {finding.meaning}"),
            identifier=f"{finding.meaning} ({card.name})"),
        finding_type=finding, algorithm_id=_algorithm(pred, card), finding_sites=list(sites) or None,
        measurements=measurements or None, qualitative_evaluations=evaluations or None,
        source_images=[hd.sr.SourceImageForMeasurementGroup(source.SOPClassUID, source.SOPInstanceUID)])
    for name, text in texts:
        group[0].ContentSequence.append(hd.sr.TextContentItem(name, text, relationship_type="CONTAINS"))
    return group


def _probability(value: float) -> hd.sr.Measurement:
    return hd.sr.Measurement(name=PROBABILITY, value=float(value), unit=NO_UNITS)


def finding_code(pred: Prediction) -> Code:
    """The SR's answer for "Pneumonia": present, absent, or undetermined for an image not assessed."""
    return UNDETERMINED if not pred.assessed else (PRESENT if pred.label == "PNEUMONIA" else ABSENT)


def result_sr(source: Dataset, pred: Prediction, card: ModelCard, instance_number: int = 1) -> hd.sr.ComprehensiveSR:
    """The TID 1500 Measurement Report of one prediction, in the source's study."""
    if pred.error:
        raise CXRError(f"No result to report: {pred.error}")
    evaluations = [hd.sr.QualitativeEvaluation(PNEUMONIA, finding_code(pred))]
    measurements = []
    if pred.assessed:
        measurements = [_probability(pred.pneumonia_probability),
                        hd.sr.Measurement(name=THRESHOLD, value=float(pred.threshold), unit=NO_UNITS)]
        if pred.subtype:
            evaluations.append(hd.sr.QualitativeEvaluation(
                ETIOLOGY, UNDETERMINED if pred.subtype == SUBTYPE_UNCERTAIN else CAUSES[pred.subtype]))
    texts = [(NOT_ASSESSED, r) for r in pred.not_assessed_reasons] + [(WARNING, w) for w in pred.warnings]
    texts.append((DISCLAIMER, INTENDED_USE))
    groups = [_group(source, pred, card, PNEUMONIA, measurements, evaluations, texts, sites=[hd.sr.FindingSite(LUNG)])]
    if pred.assessed:
        groups += [_group(source, pred, card, finding, [_probability(pred.class_probabilities[c])], [])
                   for c, finding in SUBTYPE_FINDINGS.items() if pred.class_probabilities.get(c) is not None]
    device = hd.sr.DeviceObserverIdentifyingAttributes(
        uid=device_uid(card.model_id), name=card.model_id, manufacturer_name=MANUFACTURER, model_name=card.name)
    report = hd.sr.MeasurementReport(
        observation_context=hd.sr.ObservationContext(observer_device_context=hd.sr.ObserverContext(
            observer_type=DEVICE, observer_identifying_attributes=device)),
        procedure_reported=PROCEDURE, imaging_measurements=groups)
    sr = hd.sr.ComprehensiveSR(
        evidence=[source], content=report[0], series_number=SR_SERIES_NUMBER,
        instance_number=instance_number,
        series_instance_uid=result_uid(source.SOPInstanceUID, card.model_id, "SR series"),
        sop_instance_uid=result_uid(source.SOPInstanceUID, card.model_id, "SR"), manufacturer=MANUFACTURER,
        is_complete=True, is_final=False, is_verified=False, series_description=f"CXR AI result ({RESEARCH_USE_ONLY})")
    sr.CodingSchemeIdentificationSequence = [private_scheme()]  # declares 99CXRAI, as PS3.3 C.12.1.1.4 asks
    return in_source_study(sr, source)
