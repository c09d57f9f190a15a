"""Prediction with Grad-CAM from a registered model: what the CLI, the app and the benchmarks call.

`Predictor` loads a model folder once and answers, for each image, the label against an operating point,
calibrated probabilities (temperature from the model card), the subtype and a heatmap, all from a single
forward pass (see gradcam.py for why CAM equals Grad-CAM here). A Predictor never changes after loading: it is
shared by every session of the app, so the operating point is passed to each call (default: the model's own).
`score_many` is the batch path that evaluation and the stress suite take: arrays of logits and probabilities,
without heatmaps or guards.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

import numpy as np

from .. import CLASSES
from .decision import as_three_class, label, pneumonia_probability, softmax, stated_subtype
from ..errors import InputImageError, plain_cause
from ..inputs.imaging import LoadedImage, load_image
from .operating_point import OperatingPoint
from .folder import ModelFolder
from .keras_import import load_keras_model
from ..safety.appearance import AppearanceCheck
from ..safety.ood import OODDetector
from ..safety.population import ADULT_IMAGE_REASON, AdultImageCheck, age_warning
from ..safety.intended_use import ChestCheck, assess, chest_check_refusals
from .architecture import CAM_LAYER, LOGITS_LAYER, POOL_LAYER, has_linear_head
from .gradcam import (cam_from_features, detail_layer, evidence_weights, fuse, gradcam_reference, layer_cam_model,
                      to_display)


@dataclass
class Prediction:
    """One input's result. `to_json` is what leaves the process: no identifiers, no pixels."""

    file: str
    model_id: str | None = None  # the model that answered (every surface names it)
    label: str | None = None
    pneumonia_probability: float | None = None
    subtype: str | None = None
    class_probabilities: dict[str, float | None] = field(default_factory=dict)
    threshold: float | None = None
    threshold_source: str = "model"  # "model" (the card's) or "site" (a site operating point, cxr_core.cases.store)
    warnings: list[str] = field(default_factory=list)
    error: str | None = None
    out_of_distribution: bool = False
    assessed: bool = False  # False for errors and for inputs outside the intended use (cxr_core.safety.intended_use)
    not_assessed_reasons: list[str] = field(default_factory=list)
    heatmap: np.ndarray | None = field(default=None, repr=False)
    image: LoadedImage | None = field(default=None, repr=False)

    @property
    def raw_pneumonia_probability(self) -> float | None:
        """1 - P(NORMAL) from the raw model output, also for unassessed inputs: research use, not a finding."""
        normal = self.class_probabilities.get("NORMAL")
        return None if normal is None else round(float(pneumonia_probability(np.array([[normal]]))[0]), 6)

    def to_json(self) -> dict[str, Any]:
        out = {"file": self.file, "model_id": self.model_id, "assessed": self.assessed, "not_assessed_reasons": list(self.not_assessed_reasons),
               "label": self.label, "pneumonia_probability": self.pneumonia_probability, "subtype": self.subtype,
               "class_probabilities": self.class_probabilities, "threshold": self.threshold,
               "threshold_source": self.threshold_source, "warnings": list(self.warnings), "error": self.error, "out_of_distribution": self.out_of_distribution}
        if self.error is None and not self.assessed:
            out["class_probabilities_note"] = "raw model output for research; not a finding (input not assessed)"
        return out


@dataclass(frozen=True)
class Scores:
    """Many inputs' model outputs as float arrays, at full precision: what evaluation and the stress suite read."""

    logits: np.ndarray  # n x k, the model's raw outputs
    probabilities: np.ndarray  # n x 3, calibrated by the card's temperature (as `predict` reports them)


@dataclass
class Decoded:
    """One input of `decode_many`: its image and model input, or why it could not be read."""

    name: str
    image: LoadedImage | None
    model_input: np.ndarray | None
    error: str | None


class Predictor:
    def __init__(self, model_dir: str | Path, jit_compile: bool = False):
        """`jit_compile` (XLA) is off by default: bench/inference.py measured it slower here (bench/README.md)."""
        self.model_dir = Path(model_dir)
        self.jit_compile = jit_compile
        self.folder = folder = ModelFolder(self.model_dir)
        self.card = folder.card()
        self.model = folder.load_model()
        self.preprocess = self.card.preprocess
        self.image_size = self.preprocess.size
        self.model_point = OperatingPoint.of_model(self.card)
        self.num_classes = int(self.model.output_shape[-1])
        self._build_forward()
        self.ood = OODDetector.load(folder.ood_file)
        self.appearance = AppearanceCheck.load(folder.appearance_file, folder.appearance_model_file, load_keras_model)
        self.adult_check = AdultImageCheck.load(folder.population_file)
        # A missing guard is said on every result, never silently skipped.
        self.guard_warnings = [text for guard, text in (
            (self.ood, "This model has no current out-of-distribution detector (ood.npz missing, or from before "
                       "held-out calibration): inputs were not screened; run `python -m cxr_core fit-ood`."),
            (self.appearance, "This model has no chest-appearance check (appearance.keras): inputs that are not chest "
                              "radiographs may not be refused; run `python -m cxr_core fit-ood`."),
            (self.adult_check, "This model has no population check (population.npz): adult films are not flagged "
                               "unless the DICOM gives an age; run `python -m cxr_core fit-ood`.")) if guard is None]

    @property
    def name(self) -> str:
        return self.card.display_name

    # ---- core: arrays in, probabilities and heatmaps out
    def _build_forward(self) -> None:
        import keras  # lazy: heavy
        import tensorflow as tf  # lazy: heavy

        scores = keras.Model(self.model.inputs, [self.model.get_layer(LOGITS_LAYER).output, self.model.get_layer(POOL_LAYER).output])
        self._scores = tf.function(lambda x: scores(x, training=False), reduce_retracing=True)  # no heatmap: no backward
        self._linear_head = has_linear_head(self.model)
        self._kernel = np.asarray(self.model.get_layer(LOGITS_LAYER).kernel) if self._linear_head else None
        self.cam_layer = detail_layer(self.model) if self._linear_head else None
        if self.cam_layer is not None:  # the last layer's CAM fused with LayerCAM at twice its resolution
            self._forward = layer_cam_model(self.model, self.cam_layer)
            return
        self.cam_layer = CAM_LAYER
        graph = keras.Model(self.model.inputs, [self.model.get_layer(CAM_LAYER).output,
                                                self.model.get_layer(LOGITS_LAYER).output, self.model.get_layer(POOL_LAYER).output])
        self._forward = tf.function(lambda x: graph(x, training=False), reduce_retracing=True, jit_compile=self.jit_compile)

    def forward(self, batch: np.ndarray, heatmaps: bool = True) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
        """(calibrated probabilities n x 3, heatmaps n x h x w in [0, 1] on the model's fixed scale, pooled
        features n x k) for a batch. The heatmaps show the pneumonia-against-normal evidence, whatever the
        operating point decides (gradcam.py); `heatmaps=False` skips them (None), and their backward pass."""

        if not heatmaps:
            logits, pooled = (np.asarray(t) for t in self._scores(np.asarray(batch, np.float32)))
            return as_three_class(softmax(logits, self.card.temperature)), None, pooled
        maps, logits, pooled = self._maps(batch)
        return as_three_class(softmax(logits, self.card.temperature)), to_display(maps, self.card.cam_scale), pooled

    def score_many(self, inputs: np.ndarray, batch_size: int = 64) -> Scores:
        """Model inputs (n x s x s x 1) scored in batches: logits and calibrated probabilities, no heatmaps and no
        guards (evaluation and the stress suite judge the model itself; `predict` is the interactive path)."""
        x = np.asarray(inputs, np.float32)
        parts = [np.asarray(self._scores(x[i:i + batch_size])[0]) for i in range(0, len(x), batch_size)]
        logits = np.concatenate(parts) if parts else np.zeros((0, self.num_classes), np.float32)
        return Scores(logits=logits, probabilities=as_three_class(softmax(logits, self.card.temperature)))

    def raw_heatmaps(self, batch: np.ndarray) -> np.ndarray:
        """The maps before the display scale (what `fit-presentation` fits the scale on)."""
        return self._maps(batch)[0]

    def _maps(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        out = [np.asarray(t) for t in self._forward(np.asarray(batch, np.float32))]
        if self.cam_layer != CAM_LAYER:
            detail, last, logits, pooled = out
            return fuse(cam_from_features(last, self._kernel, evidence_weights(logits)), detail), logits, pooled
        last, logits, pooled = out  # no earlier layer: the last layer's map
        weights = evidence_weights(logits)
        maps = (cam_from_features(last, self._kernel, weights) if self._linear_head else
                np.stack([gradcam_reference(self.model, b, w) for b, w in zip(batch, weights)]))
        return maps, logits, pooled

    # ---- one image
    def predict(self, source: str | Path | bytes | LoadedImage, name: str | None = None,
                point: OperatingPoint | None = None) -> Prediction:
        """One input decided at `point` (default: the model's own threshold)."""
        name = name if name is not None else (str(source) if isinstance(source, (str, Path)) else "upload")
        point = point or self.model_point
        try:
            image = source if isinstance(source, LoadedImage) else load_image(source)
        except InputImageError as exc:
            return Prediction(file=name, model_id=self.card.model_id, error=str(exc))
        probs, heat, pooled, batch, looks = self._run([self.preprocess(image.pixels)])
        return self._to_prediction(name, image, probs[0], heat[0], pooled[0], batch[0], looks[0], point)

    def _run(self, inputs: list[np.ndarray]
             ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, list[ChestCheck | None]]:
        """The forward pass of a batch, and each input's chest-appearance check (one pass for the batch; None: the
        model has no such check)."""
        batch = np.stack(inputs)
        probs, heat, pooled = self.forward(batch)
        looks = self.appearance.checks(batch) if self.appearance is not None else [None for _ in batch]
        return probs, heat, pooled, batch, looks

    def _to_prediction(self, name: str, image: LoadedImage | None, probs: np.ndarray, heat: np.ndarray,
                       pooled: np.ndarray, model_input: np.ndarray, appearance: ChestCheck | None,
                       point: OperatingPoint) -> Prediction:
        layout, unusual = self.ood.check(model_input[..., 0], pooled) if self.ood is not None else (None, [])
        population = self._population_warning(image, model_input)
        refusals = chest_check_refusals(layout, appearance, population is not None)
        verdict = assess(image, refusals, unusual, population)
        p = float(pneumonia_probability(probs[None])[0])
        decided = label(p, point.threshold) if verdict.assessed else None
        three = self.num_classes == 3
        return Prediction(
            file=name, model_id=self.card.model_id, label=decided,
            pneumonia_probability=round(p, 6) if verdict.assessed else None,
            subtype=stated_subtype(probs, self.card.subtype_margin) if decided == "PNEUMONIA" and three else None,
            class_probabilities={c: (round(float(v), 6) if three or c == "NORMAL" else None) for c, v in zip(CLASSES, probs)},
            threshold=round(point.threshold, 6), threshold_source=point.source,
            warnings=list(verdict.warnings) + self.guard_warnings,
            out_of_distribution=bool(refusals or unusual), assessed=verdict.assessed,
            not_assessed_reasons=list(verdict.reasons), heatmap=heat, image=image)

    def _population_warning(self, image: LoadedImage, model_input: np.ndarray) -> str | None:
        """A known DICOM age decides; otherwise the image-based adult check (when the model has one)."""

        if "age_years" in image.metadata:
            return age_warning(float(image.metadata["age_years"]))
        if self.adult_check is not None and bool(self.adult_check.flags(model_input[None])[0]):
            return ADULT_IMAGE_REASON
        return None

    # ---- many files
    def predict_many(self, sources: Iterable[tuple[str, str | Path | bytes]], batch_size: int = 32,
                     keep_images: bool = False, progress: Callable[[int], None] | None = None,
                     point: OperatingPoint | None = None) -> Iterator[Prediction]:
        """Decode in parallel threads, batch, and predict at `point` (default: the model's threshold); yields in
        input order. Failures yield errors."""
        point = point or self.model_point
        done = 0
        for decoded in self.decode_many(sources, batch_size):
            ok = [d for d in decoded if d.error is None]
            results: dict[int, Prediction] = {}
            if ok:
                probs, heat, pooled, batch, looks = self._run([d.model_input for d in ok])  # type: ignore[misc]
                for j, d in enumerate(ok):
                    pred = self._to_prediction(d.name, d.image, probs[j], heat[j], pooled[j], batch[j], looks[j], point)
                    if not keep_images:
                        pred.image = None
                    results[id(d)] = pred
            for d in decoded:
                done += 1
                if progress:
                    progress(done)
                yield results.get(id(d)) or Prediction(file=d.name, model_id=self.card.model_id, error=d.error)

    def decode_many(self, sources: Iterable[tuple[str, str | Path | bytes]],
                    batch_size: int = 32) -> Iterator[list[Decoded]]:
        """(name, source) pairs decoded and preprocessed in parallel threads, yielded in input order, a batch at a
        time; an unreadable input carries its error and never stops the others."""
        items = list(sources)
        workers = max(2, min(8, (os.cpu_count() or 2) * 2))

        def decode(item: tuple[str, Any]) -> Decoded:
            name, src = item
            try:
                img = load_image(src)
                return Decoded(name, img, self.preprocess(img.pixels), None)
            except InputImageError as exc:
                return Decoded(name, None, None, str(exc))
            except Exception as exc:  # never let one file stop the batch
                return Decoded(name, None, None, f"The file could not be read ({plain_cause(exc)}).")

        with ThreadPoolExecutor(max_workers=workers) as pool:
            for start in range(0, len(items), batch_size):
                yield list(pool.map(decode, items[start:start + batch_size]))


__all__ = ["Decoded", "Prediction", "Predictor", "Scores"]
