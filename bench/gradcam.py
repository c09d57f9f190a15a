"""Is the heatmap faithful? A deletion test on the model's own held-out pneumonia films.

Each film's pixels are replaced, most salient first, by the same pixels of a held-out NORMAL film (a different
one per pneumonia film, drawn at random), in steps of 5 % of the image; P(pneumonia) is recorded after each
step. (Blurring, the usual replacement, or an average chest add haze, which on a chest film looks like
pneumonia: they remove nothing here.) A faithful map makes P(pneumonia) fall faster than random
removal: a smaller area under the deletion curve (mean P over the steps). Compared:
- the product's map (`Predictor.raw_heatmaps`: the geometric mean of the last layer's CAM and LayerCAM before
  the last pooling, 14 x 14 at 224 px),
- LayerCAM alone at that layer,
- the last layer's classic CAM alone (7 x 7 at 224 px), as the product drew it before,
- random orders (3 per film).

    python bench/gradcam.py [--model DIR_OR_ID] [--films 80] [--save]
"""

from __future__ import annotations

import argparse

import cv2  # noqa: E402
import numpy as np  # noqa: E402
from _common import emit  # noqa: E402

STEPS = 20  # 5 % of the pixels per step


def deletion_curve(predictor, image: np.ndarray, saliency: np.ndarray, normal: np.ndarray) -> np.ndarray:
    """P(pneumonia) after replacing 0, 5, ..., 100 % of `image`'s pixels by `normal`'s, in the order of `saliency`
    (high first)."""
    size = image.shape[0]
    sal = cv2.resize(saliency.astype(np.float32), (size, size), interpolation=cv2.INTER_LINEAR).reshape(-1)
    order = np.argsort(-sal, kind="stable")
    batch = []
    for step in range(STEPS + 1):
        removed = np.zeros(size * size, bool)
        removed[order[: round(step / STEPS * size * size)]] = True
        batch.append(np.where(removed.reshape(size, size, 1), normal, image))
    probs = predictor.forward(np.stack(batch), heatmaps=False)[0]
    return 1.0 - probs[:, 0]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=None, help="model folder or registered id (default: the active model)")
    ap.add_argument("--films", type=int, default=80)
    args = ap.parse_args()

    from cxr_core.request import Request
    from cxr_core.site.models import quiet_store
    from cxr_core.model.gradcam import cam_from_features, evidence_weights, layer_cam_model
    from cxr_core.validation.dataset import held_out_split
    from cxr_core.model.architecture import CAM_LAYER, LOGITS_LAYER
    from cxr_core.model.predict import Predictor

    import keras

    model_dir = Request.resolve(quiet_store(), args.model).model_dir
    predictor = Predictor(model_dir)
    _, held = held_out_split(model_dir)
    sick = [r for r in held if r.label > 0]
    rng = np.random.default_rng(0)
    chosen = [sick[i] for i in rng.choice(len(sick), size=min(args.films, len(sick)), replace=False)]
    x = np.stack([predictor.preprocess.load(r.path) for r in chosen])
    normals = [r for r in held if r.label == 0]
    donors = np.stack([predictor.preprocess.load(normals[i].path)
                       for i in rng.choice(len(normals), size=len(x), replace=len(normals) < len(x))])
    last = keras.Model(predictor.model.inputs, [predictor.model.get_layer(CAM_LAYER).output,
                                                predictor.model.get_layer(LOGITS_LAYER).output])
    features, logits = (np.asarray(t) for t in last(x, training=False))
    kernel = np.asarray(predictor.model.get_layer(LOGITS_LAYER).kernel)
    maps = {"product": predictor.raw_heatmaps(x),
            "layercam_alone": np.asarray(layer_cam_model(predictor.model, predictor.cam_layer)(x)[0]),
            "last_layer_cam": cam_from_features(features, kernel, evidence_weights(logits))}
    areas: dict[str, list[float]] = {name: [] for name in (*maps, "random")}
    for i, (image, normal) in enumerate(zip(x, donors)):
        for name, m in maps.items():
            areas[name].append(float(deletion_curve(predictor, image, m[i], normal).mean()))
        areas["random"].append(float(np.mean([deletion_curve(predictor, image, rng.random((14, 14)), normal).mean()
                                              for _ in range(3)])))
    start = 1.0 - predictor.forward(x, heatmaps=False)[0][:, 0]
    emit("model", predictor.card.model_id)
    emit("films", f"{len(x)} held-out pneumonia films (of {len(sick)}), seed 0")
    emit("product_map", f"{predictor.cam_layer} {maps['product'].shape[1]} x {maps['product'].shape[2]}")
    emit("mean_p_pneumonia_before_deletion", float(start.mean()))
    for name, values in areas.items():
        v = np.asarray(values)
        emit(f"deletion_area_{name}", f"{v.mean():.4f} (95 % CI {v.mean() - 1.96 * v.std(ddof=1) / np.sqrt(len(v)):.4f} "
                                      f"to {v.mean() + 1.96 * v.std(ddof=1) / np.sqrt(len(v)):.4f})")
    for name in maps:
        wins = np.asarray(areas[name]) < np.asarray(areas["random"])
        emit(f"films_where_{name}_beats_random", f"{int(wins.sum())} of {len(wins)}")
    emit("lower_is_more_faithful", "the mean P(pneumonia) over 0-100 % deletion")


if __name__ == "__main__":
    main()
