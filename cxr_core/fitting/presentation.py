"""`fit-presentation`: how a model's results are presented, fitted on held-out data and written into its card:
the subtype margin (from the held-out scores) and the Grad-CAM display scale."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ..errors import CXRError
from ..model.folder import ModelFolder
from ..model.predict import Predictor
from ..validation.dataset import held_out_split
from ..validation.evaluation import read_scores
from ..validation.metrics import choose_subtype_margin

CAM_SCALE_PERCENTILE = 90


def fit_presentation(model_dir: Path, held_out: tuple[Any, Any] | None = None, data_dir: Path | None = None,
                     precision: float = 0.85) -> dict[str, Any]:
    """How results are presented, fitted on held-out data and written into the card (`fit-presentation`, and
    training before registration): the subtype margin, from the held-out scores (validation_scores.csv), and
    the Grad-CAM scale, the 90th percentile of the map peaks of the held-out pneumonia films (`held_out`:
    their preprocessed images and 3-class labels; default: the model's own held-out split, from its card)."""
    folder = ModelFolder(model_dir)
    if not folder.scores_file.is_file():
        raise CXRError(f"{str(model_dir)!r} has no held-out scores ({folder.SCORES}) to fit on.")
    _, y_scores, probs = read_scores(folder.scores_file)
    predictor = Predictor(folder.path)
    if held_out is None:
        _, held = held_out_split(folder.path, data_dir)
        sick = [r for r in held if r.label > 0]
        x = np.stack([predictor.preprocess.load(r.path) for r in sick])
    else:
        x = held_out[0][np.asarray(held_out[1]) > 0]
    peaks = np.concatenate([predictor.raw_heatmaps(x[i:i + 32]).reshape(len(x[i:i + 32]), -1).max(axis=1)
                            for i in range(0, len(x), 32)])
    fields = {"gradcam": {"method": ("geometric mean of the last layer's CAM and LayerCAM"
                                     if predictor.cam_layer != "cam_features" else "CAM"),
                          "layer": predictor.cam_layer, "explains": "logit(likelier subtype) - logit(NORMAL)",
                          "scale": float(np.percentile(peaks, CAM_SCALE_PERCENTILE)),
                          "fitted_on": f"{len(x)} held-out pneumonia films: the {CAM_SCALE_PERCENTILE}th percentile "
                                       "of their map peaks"}}
    if probs.shape[1] == 3 and int((y_scores > 0).sum()):
        fields["subtype_policy"] = choose_subtype_margin(y_scores, probs, precision)
    folder.update_card(**fields)
    return fields
