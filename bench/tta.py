"""Would test-time augmentation lift a model on an external site? Each film of a labelled folder (site A) is scored
as given and under small shifts, zooms and rotations within the training augmentation's range (the shipped recipe
trains without horizontal flips, so none is tried), one view at a time and averaged (the views' logits, at the card's
temperature). Prints the pneumonia AUC of each, with a bootstrap 95 % CI for the film as given.

    python bench/tta.py ../shared/data/kermany-site-a [--model DIR_OR_ID] [--save]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from _common import emit  # noqa: E402

VIEWS = {"as given": {}, "zoom 0.95": {"zoom": 0.95}, "zoom 1.05": {"zoom": 1.05}, "shift right 3 %": {"dx": 0.03},
         "shift left 3 %": {"dx": -0.03}, "shift down 3 %": {"dy": 0.03}, "shift up 3 %": {"dy": -0.03},
         "rotate +3 deg": {"rot": 3.0}, "rotate -3 deg": {"rot": -3.0}}
AVERAGES = {"as given + 2 zooms": ("as given", "zoom 0.95", "zoom 1.05"),
            "as given + 4 shifts": ("as given", "shift right 3 %", "shift left 3 %", "shift down 3 %", "shift up 3 %"),
            "all 9 views": tuple(VIEWS)}


def warp(image: np.ndarray, zoom: float = 1.0, dx: float = 0.0, dy: float = 0.0, rot: float = 0.0) -> np.ndarray:
    import cv2

    size = image.shape[0]
    m = cv2.getRotationMatrix2D((size / 2, size / 2), rot, zoom)
    m[0, 2] += dx * size
    m[1, 2] += dy * size
    return cv2.warpAffine(image[..., 0], m, (size, size), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_REFLECT)[..., None]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("site", help="a labelled folder (NORMAL/ and PNEUMONIA/)")
    parser.add_argument("--model", default=None, help="a model folder or id (default: the site's model)")
    args = parser.parse_args()

    import keras

    from cxr_core.formatting import ci
    from cxr_core.model import decision as D
    from cxr_core.model.architecture import LOGITS_LAYER
    from cxr_core.model.predict import Predictor
    from cxr_core.request import Request
    from cxr_core.site.evidence import bootstrap_aucs
    from cxr_core.site.models import quiet_store
    from cxr_core.validation import metrics as M
    from cxr_core.validation.dataset import index_dataset

    predictor = Predictor(Request.resolve(quiet_store(), args.model).model_dir)
    records = index_dataset(Path(args.site))
    x = np.stack([predictor.preprocess.load(r.path) for r in records]).astype(np.float32)
    yb = (np.array([r.label for r in records]) > 0).astype(int)
    logit_model = keras.Model(predictor.model.input, predictor.model.get_layer(LOGITS_LAYER).output)

    def logits(views: np.ndarray) -> np.ndarray:
        return np.concatenate([np.asarray(logit_model(views[i:i + 64], training=False)) for i in range(0, len(views), 64)])

    def p(stack: list[np.ndarray]) -> np.ndarray:
        return M.pneumonia_probability(M.as_three_class(D.softmax(np.mean(stack, 0), predictor.card.temperature)))

    scored = {name: logits(np.stack([warp(im, **kw) for im in x]) if kw else x) for name, kw in VIEWS.items()}
    emit("model", predictor.card.model_id)
    emit("site", f"{Path(args.site).name}: n = {len(yb)} ({int(yb.sum())} pneumonia, {int((1 - yb).sum())} normal)")
    draws = np.random.default_rng(0).integers(0, len(yb), (1000, len(yb)))
    given = p([scored["as given"]])
    aucs = bootstrap_aucs(yb, given, draws)
    emit("AUC as given", f"{M.safe_auc(yb, given):.4f} {ci(np.nanpercentile(aucs, [2.5, 97.5]).tolist())}")
    for name in list(VIEWS)[1:]:
        emit(f"AUC {name}", f"{M.safe_auc(yb, p([scored[name]])):.4f}")
    for name, views in AVERAGES.items():
        emit(f"AUC averaged: {name}", f"{M.safe_auc(yb, p([scored[v] for v in views])):.4f}")


if __name__ == "__main__":
    main()
