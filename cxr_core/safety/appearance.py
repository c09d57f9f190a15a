"""The chest-appearance check: does this image look like a frontal chest radiograph at all?

A small convolutional autoencoder (the idea of torchxrayvision's autoencoder check) trained only on the model's
training films, at 64 x 64. It learns to draw chest films from a 32-number code, so whatever it is shown comes
back looking like a chest; three one-class signals then measure what it could not explain:

- reconstruction: the error between the input and its reconstruction at the scale of the anatomy (both blurred,
  Gaussian sigma 3 px at 64 px): lung fields, mediastinum and diaphragm where a chest film has them. The error
  at full resolution is dominated by fine detail that no autoencoder reproduces, and separates poorly;
- code: how far the code lies from the training films' codes (Mahalanobis, Ledoit-Wolf covariance);
- detail: the fine-structure energy of the model input, histogram equalised (absolute Laplacian at the model's
  resolution, over the busier quarter of an 8 x 8 grid of blocks), above anything held-out chest films have:
  printed text, drawn edges, and the noise of flat areas (paper, a background, air) that equalisation amplifies,
  whatever the model's own intensity policy; a chest film's burned-in label fills a few blocks, not a quarter.

Each earns its place in bench/ood.py (each refuses foreign kinds the others miss). Every threshold is calibrated
on held-out pediatric films (`ThresholdRule`, like the other guards), never on the training films' own scores
(cxr_core.fitting.appearance fits it, through the one training loop).
It refuses: a chest film with tubes, leads or markers is explained at this scale and is assessed. Stored as
`appearance.keras` (the network, loaded with safe_mode=True) and `appearance.npz` (thresholds and code
statistics, allow_pickle=False) beside the model, at the paths the model folder gives.
"""

from __future__ import annotations

import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

import cv2
import numpy as np

from ..fileio import read_npz, write_atomic, write_npz_atomic
from .intended_use import ChestCheck
from .ood import ThresholdRule, excess

REASON = "This does not look like a chest radiograph ({why})."
WHY = {"reconstruction": "a model of what chest films look like cannot reproduce its layout",
       "code": "its appearance is unlike every chest film the model was built on",
       "detail": "its fine structure, such as text, drawn edges or flat noisy areas, is unlike a chest film's"}
RULES = {"reconstruction": ThresholdRule(0.999, 1.25), "code": ThresholdRule(0.999, 1.25),
         "detail": ThresholdRule(0.999, 1.1)}
# The code distance is a Mahalanobis distance with a long held-out tail (as the model features' is): its margin is
# wider, so that a real child's film with an arm over the chest (bench/checksets) stays assessed. The reconstruction
# error has one too: an infant's film with the head and arms in the field (two of site A's 311 films) sat just over a
# 1.1 margin, every foreign image that only it refuses (bench/ood.py) at twice the threshold or more.
ANATOMY_SIGMA = 3.0  # px at the autoencoder's 64 px: the scale at which the reconstruction error is measured


def furthest(scores: dict[str, np.ndarray], thresholds: dict[str, np.ndarray | float]) -> np.ndarray:
    """Per image, the check's excess: the highest of its signals' scores over their thresholds (a NaN signal does
    not hide another's)."""
    return np.fmax.reduce([excess(scores[k], thresholds[k]) for k in RULES])


@dataclass(frozen=True)
class AutoencoderRecipe:
    """How the autoencoder is built and trained (recorded in the card)."""

    size: int = 64
    filters: tuple[int, ...] = (16, 32, 64, 64)
    code: int = 32
    epochs: int = 40
    batch_size: int = 64
    min_steps: int = 240  # a tiny training set still gets this many updates
    learning_rate: float = 2e-3
    seed: int = 0
    equalize: bool = True  # thumbnails equalised (`thumbnails`); checks saved before it existed read False
    detail_version: int = 2  # how the detail signal is measured (`detail_energy`); older checks read 1

    def __post_init__(self) -> None:
        if self.size % (2 ** len(self.filters)):
            raise ValueError(f"size = {self.size}: must be divisible by 2 ** {len(self.filters)} (one halving per stage)")


def thumbnails(images: np.ndarray, size: int, equalize: bool = False) -> np.ndarray:
    """(n, H, W[, 1]) model inputs in [0, 1] -> (n, size, size, 1) float32 (area interpolation); `equalize`: each
    thumbnail's histogram equalised, so that the check sees the film's layout whatever the model's intensity policy
    (a model without one passes the unit's tone curve through to it)."""
    images = np.asarray(images, np.float32)
    if images.ndim == 4:
        images = images[..., 0]
    if images.ndim == 2:
        images = images[None]
    small = [cv2.resize(im, (size, size), interpolation=cv2.INTER_AREA) for im in images]
    if equalize:
        small = [_equalized(im) for im in small]
    return np.stack(small)[..., None]


def build_autoencoder(recipe: AutoencoderRecipe) -> Any:
    import keras  # lazy: heavy
    from keras import layers  # lazy: heavy

    inp = keras.Input((recipe.size, recipe.size, 1), name="thumbnail")
    x = inp
    for i, f in enumerate(recipe.filters):
        x = layers.Conv2D(f, 3, strides=2, padding="same", activation="relu", name=f"enc{i}")(x)
    side = recipe.size // 2 ** len(recipe.filters)
    x = layers.Flatten()(x)
    code = layers.Dense(recipe.code, name="code")(x)
    x = layers.Dense(side * side * recipe.filters[-1], activation="relu", name="dec_dense")(code)
    x = layers.Reshape((side, side, recipe.filters[-1]))(x)
    for i, f in enumerate(reversed(recipe.filters)):
        x = layers.Conv2DTranspose(f, 3, strides=2, padding="same", activation="relu", name=f"dec{i}")(x)
    out = layers.Conv2D(1, 3, padding="same", activation="sigmoid", name="reconstruction")(x)
    return keras.Model(inp, out, name="chest_appearance_autoencoder")


DETAIL_GRID = 8  # version 2: blocks per side
DETAIL_QUANTILE = 75  # version 2: the busier quarter of the blocks


def detail_energy(images: np.ndarray, version: int = 1) -> np.ndarray:
    """Fine-structure energy of each model input, at its own resolution. Version 1 (checks fitted before version 2):
    the mean absolute Laplacian. Version 2: of the input histogram equalised (the same whatever the model's intensity
    policy: without one, a foreign image's flat noisy background stays flat and would pass), over a grid of blocks,
    the 75th percentile of their means: a document, a screenshot or a noisy background is busy over most of the film,
    a chest film's burned-in label or marker over a few blocks (a mean over the film refused annotated films)."""
    images = np.asarray(images, np.float32)
    images = images[..., 0] if images.ndim == 4 else images[None] if images.ndim == 2 else images
    if version == 1:
        return np.array([float(np.abs(cv2.Laplacian(im, cv2.CV_32F)).mean()) for im in images])
    out = []
    for im in images:
        lap = np.abs(cv2.Laplacian(_equalized(im), cv2.CV_32F))
        h, w = (n // DETAIL_GRID * DETAIL_GRID for n in lap.shape)
        blocks = lap[:h, :w].reshape(DETAIL_GRID, h // DETAIL_GRID, DETAIL_GRID, w // DETAIL_GRID).mean(axis=(1, 3))
        out.append(float(np.percentile(blocks, DETAIL_QUANTILE)))
    return np.array(out)


def _equalized(image: np.ndarray) -> np.ndarray:
    """One image in [0, 1], histogram equalised (256 levels), in [0, 1]."""
    return cv2.equalizeHist((np.clip(image, 0, 1) * 255).round().astype(np.uint8)).astype(np.float32) / 255.0


@dataclass
class AppearanceCheck:
    """The fitted autoencoder, the training codes' mean and precision, and one refusal threshold per signal."""

    network: Any  # keras.Model: thumbnail -> reconstruction
    code_mean: np.ndarray
    code_precision: np.ndarray
    thresholds: dict[str, float]  # signal -> refusal threshold (RULES' keys)
    size: int
    equalize: bool = False
    detail_version: int = 1

    def __post_init__(self) -> None:
        import keras  # lazy: heavy
        import tensorflow as tf  # lazy: heavy

        both = keras.Model(self.network.inputs, [self.network.output, self.network.get_layer("code").output])
        self._run = tf.function(lambda x: both(x, training=False), reduce_retracing=True)

    # ---- scoring
    def reconstruct(self, images: np.ndarray, batch_size: int = 256) -> tuple[np.ndarray, np.ndarray]:
        """(per-image reconstruction error at the anatomy's scale, codes) for model inputs."""
        x = thumbnails(images, self.size, self.equalize)
        errors, codes = [], []
        for start in range(0, len(x), batch_size):
            batch = x[start:start + batch_size]
            recon, code = (np.asarray(t) for t in self._run(batch))
            blur = lambda a: cv2.GaussianBlur(a[..., 0], (0, 0), ANATOMY_SIGMA)  # noqa: E731
            errors.append([float(np.mean((blur(a) - blur(b)) ** 2)) for a, b in zip(batch, recon)])
            codes.append(code)
        return np.concatenate(errors), np.concatenate(codes)

    def scores(self, images: np.ndarray) -> dict[str, np.ndarray]:
        """Per model input, each signal's score (RULES' keys); higher = less like a chest film."""
        errors, codes = self.reconstruct(images)
        d = codes.astype(np.float64) - self.code_mean
        return {"reconstruction": errors, "code": np.sqrt(np.maximum(np.einsum("ij,jk,ik->i", d, self.code_precision, d), 0.0)),
                "detail": detail_energy(images, self.detail_version)}

    def findings(self, images: np.ndarray) -> dict[str, np.ndarray]:
        """Per model input: refused by each signal, and `refused` by any."""
        scores = self.scores(images)
        out = {k: scores[k] > self.thresholds[k] for k in RULES}
        out["refused"] = np.logical_or.reduce([out[k] for k in RULES])
        return out

    def checks(self, images: np.ndarray) -> list[ChestCheck]:
        """Per model input, this check's answer: the first signal that refuses says why (none: it looks like a chest
        film); the excess is the highest of the signals' score-to-threshold ratios."""
        scores = self.scores(images)
        over = furthest(scores, self.thresholds)
        return [ChestCheck(tuple(REASON.format(why=WHY[k]) for k in RULES if scores[k][i] > self.thresholds[k])[:1],
                           float(over[i])) for i in range(len(over))]

    def describe(self, recipe: AutoencoderRecipe) -> dict[str, Any]:
        """The card's record of this check."""
        return {"what": "a convolutional autoencoder of the model's training films: refuses what it cannot explain "
                        "(reconstruction error at the anatomy's scale, distance of its code, fine-structure energy)",
                "recipe": {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(recipe).items()},
                "parameters": int(self.network.count_params()),
                "thresholds": dict(self.thresholds),
                "rules": {k: rule.describe() for k, rule in RULES.items()}}

    # ---- storage
    def save(self, stats_file: Path, network_file: Path) -> None:
        """The statistics and thresholds (npz) and the autoencoder (.keras), each written atomically."""
        with tempfile.TemporaryDirectory(prefix="cxr_appearance_") as tmp:
            staged = Path(tmp) / network_file.name  # Keras writes the file itself: staged, then atomic
            self.network.save(staged)
            write_atomic(network_file, staged.read_bytes())
        write_npz_atomic(stats_file, code_mean=self.code_mean, code_precision=self.code_precision,
                         size=self.size, equalize=int(self.equalize), detail_version=self.detail_version,
                         **{f"threshold_{k}": v for k, v in self.thresholds.items()})

    @classmethod
    def load(cls, stats_file: Path, network_file: Path,
             load_network: Callable[[Path], Any]) -> "AppearanceCheck | None":
        """None when the model has no appearance check, or an older one (refit with fit-ood). `load_network`
        reads the .keras file (the model layer's safe loader)."""
        z = read_npz(stats_file)
        if z is None or not network_file.is_file() or any(f"threshold_{k}" not in z for k in RULES):
            return None
        return cls(load_network(network_file), z["code_mean"], z["code_precision"],
                   {k: float(z[f"threshold_{k}"]) for k in RULES}, int(z["size"]),
                   bool(int(z["equalize"])) if "equalize" in z else False,
                   int(z["detail_version"]) if "detail_version" in z else 1)
