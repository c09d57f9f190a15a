"""The Grad-CAM overlay as a Secondary Capture (`overlay_sc`), built with highdicom, with the decision and a
"research use only" caption burned in, for viewers that show only pictures. Made for assessed images only."""

from __future__ import annotations

import cv2
import highdicom as hd
import numpy as np
from pydicom.dataset import Dataset

from ..errors import CXRError
from ..model.gradcam import overlay
from ..model.operating_point import threshold_wording
from ..model.predict import Prediction
from ..safety.intended_use import RESEARCH_USE_ONLY
from .source import MANUFACTURER, SC_SERIES_NUMBER, in_source_study, result_uid

CAPTION = (f"{RESEARCH_USE_ONLY.upper()} - NOT FOR DIAGNOSIS", "Grad-CAM: regions behind the model's answer")


def result_line(pred: Prediction) -> str:
    """The decision the Secondary Capture burns in beside the research-use caption."""
    return (f"{pred.label}  P(pneumonia) {pred.pneumonia_probability:.2f}  threshold {pred.threshold:.2f} "
            f"({threshold_wording(pred.threshold_source)})")


def captioned(overlay_rgb: np.ndarray, lines: tuple[str, ...] = CAPTION, min_width: int = 768) -> np.ndarray:
    """The overlay (upscaled to at least `min_width` so the text stays legible) with `lines` burned into a
    black band below it, each line scaled to fit the width."""
    h, w = overlay_rgb.shape[:2]
    if w < min_width:
        h, w = round(h * min_width / w), min_width
        overlay_rgb = cv2.resize(overlay_rgb, (w, h), interpolation=cv2.INTER_LINEAR)
    font, thickness = cv2.FONT_HERSHEY_SIMPLEX, max(1, w // 600)
    (tw, th), _ = cv2.getTextSize(max(lines, key=len), font, 1.0, thickness)
    scale = 0.92 * w / tw
    line = int(th * scale * 1.8)
    out = np.zeros((h + line * len(lines) + line // 2, w, 3), np.uint8)
    out[:h] = overlay_rgb
    for i, text in enumerate(lines):
        cv2.putText(out, text, (int(0.04 * w), h + line * (i + 1)), font, scale, (255, 255, 255), thickness, cv2.LINE_AA)
    return out


def overlay_sc(source: Dataset, pred: Prediction, model_id: str, instance_number: int = 1) -> hd.sc.SCImage:
    """The Grad-CAM overlay (the product's default look: every surface sends the same picture) as a Secondary
    Capture in the source's study, with the decision (label, P(pneumonia), threshold and its source) and the
    research-use caption burned in. Made for assessed images only."""
    if not pred.assessed or pred.image is None or pred.heatmap is None:
        raise CXRError("No overlay to capture: the image was not assessed.")
    sc = hd.sc.SCImage.from_ref_dataset(
        ref_dataset=source, pixel_array=captioned(overlay(pred.image.pixels, pred.heatmap),
                                                  (result_line(pred), *CAPTION)),
        photometric_interpretation="RGB", bits_allocated=8,
        coordinate_system="PATIENT", series_number=SC_SERIES_NUMBER, instance_number=instance_number,
        series_instance_uid=result_uid(source.SOPInstanceUID, model_id, "SC series"),
        sop_instance_uid=result_uid(source.SOPInstanceUID, model_id, "SC"), manufacturer=MANUFACTURER,
        patient_orientation=("L", "F"), series_description=f"CXR AI Grad-CAM ({RESEARCH_USE_ONLY})")
    sc.BurnedInAnnotation = "YES"
    sc.BodyPartExamined = "CHEST"  # unpaired: General Series' Laterality (type 2C) is then rightly absent
    return in_source_study(sc, source)
