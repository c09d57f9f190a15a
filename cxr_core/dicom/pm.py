"""The Grad-CAM heatmap as a Parametric Map (`heatmap_pm`), built with highdicom: float, on the model's fixed scale,
with its real-world value mapping, the source's size and pixel grid, referencing the source image and naming the
decision it explains. Made for assessed images only."""

from __future__ import annotations

import copy

import highdicom as hd
import numpy as np
from pydicom.dataset import Dataset

from ..errors import CXRError
from ..model.card import ModelCard
from ..model.gradcam import on_image
from ..model.predict import Prediction
from ..safety.intended_use import RESEARCH_USE_ONLY
from .codes import GRADCAM, NO_UNITS
from .source import MANUFACTURER, PM_SERIES_NUMBER, in_source_study, result_uid


def map_decision(pred: Prediction) -> str:
    """The decision a Parametric Map names (its Content Description, 64 characters at most): the label, the
    probability and the threshold that decided it, and whose threshold that is."""
    return (f"{pred.label}: P(pneumonia) {pred.pneumonia_probability:.3f}, threshold {pred.threshold:.3f} "
            f"({pred.threshold_source})")


class _ProjectionParametricMap(hd.pm.ParametricMap):
    """highdicom's ParametricMap, made to work for the single frame of a projection radiograph: the frame's
    dimension index (its Frame Label) is written where highdicom 0.28 indexes by it but leaves it out."""

    def _build_luts(self) -> None:
        for item in self.PerFrameFunctionalGroupsSequence:
            content = item.FrameContentSequence[0]
            if not content.get("DimensionIndexValues"):
                content.DimensionIndexValues = [1]
        super()._build_luts()


def _with_geometry(source: Dataset) -> Dataset:
    """The source's header with the plane geometry a Parametric Map needs. A source with its own frame of reference
    and plane keeps them (the map lies in the source's frame of reference). A projection radiograph has none: it
    gets a frame of reference of its own (one UID per source image) whose plane is the source's pixel matrix
    (origin at the first pixel, rows along x, columns along y, its pixel spacing or 1 mm); the map's per-frame
    reference to the source, with Spatial Locations Preserved, says it matches the source pixel for pixel."""
    if all(source.get(k) for k in ("FrameOfReferenceUID", "ImagePositionPatient", "ImageOrientationPatient",
                                     "PixelSpacing")):
        return source
    geo = copy.deepcopy(source)
    geo.FrameOfReferenceUID = result_uid(source.SOPInstanceUID, "", "frame of reference")
    geo.PositionReferenceIndicator = ""
    geo.ImagePositionPatient = [0.0, 0.0, 0.0]
    geo.ImageOrientationPatient = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0]
    spacing = source.get("PixelSpacing") or source.get("ImagerPixelSpacing") or [1.0, 1.0]
    geo.PixelSpacing = [float(v) for v in spacing]
    geo.SliceThickness = 1.0
    return geo


def heatmap_pm(source: Dataset, pred: Prediction, card: ModelCard, instance_number: int = 1) -> hd.pm.ParametricMap:
    """The Grad-CAM heatmap as a Parametric Map in the source's study: float32, the source's rows and columns, on
    the model's fixed scale (0 = no evidence, 1 = the card's `gradcam.scale`; a model without one: each map's own
    peak), with its real-world value mapping, referencing the source image and naming the decision it explains."""

    if not pred.assessed or pred.heatmap is None:
        raise CXRError("No heatmap to map: the image was not assessed.")
    scale = "1 = the model's fixed Grad-CAM scale" if card.cam_scale else "1 = this map's own peak"
    mapping = hd.pm.RealWorldValueMapping(
        lut_label="GRADCAM", lut_explanation=f"Pneumonia evidence, {scale}"[:64], unit=NO_UNITS,
        value_range=(0.0, 1.0), slope=1.0, intercept=0.0, quantity_definition=GRADCAM)
    values = on_image(pred.heatmap, (int(source.Rows), int(source.Columns)), card.preprocess.pad)
    pm = _ProjectionParametricMap(
        source_images=[_with_geometry(source)], pixel_array=values.astype(np.float32),
        series_instance_uid=result_uid(source.SOPInstanceUID, card.model_id, "PM series"),
        series_number=PM_SERIES_NUMBER, instance_number=instance_number,
        sop_instance_uid=result_uid(source.SOPInstanceUID, card.model_id, "PM"), manufacturer=MANUFACTURER,
        manufacturer_model_name=card.name, software_versions=card.version, device_serial_number=card.model_id,
        contains_recognizable_visual_features=False, real_world_value_mappings=[mapping],
        voi_lut_transformations=[hd.VOILUTTransformation(window_center=0.5, window_width=1.0)],
        content_label="GRADCAM", content_description=map_decision(pred)[:64],
        series_description=f"CXR AI Grad-CAM map ({RESEARCH_USE_ONLY})")
    pm.BodyPartExamined = "CHEST"  # unpaired: General Series' Laterality (type 2C) is then rightly absent
    return in_source_study(pm, source)
