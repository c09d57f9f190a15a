"""A test model whose answers the test chooses: a tiny Keras model, saved as a real model folder with a real card and
fitted input guards, served by the real `Predictor` (temperature, guards, preprocessing, Grad-CAM).

The film is SIZE x SIZE, read as a GRID x GRID grid of CELL x CELL cells (their means):
- row 0 is the code strip: cells (0, 0), (0, 1), (0, 2) set the NORMAL, BACTERIAL and VIRAL logits,
  logit_k = SPAN * (cell - 0.5); cell (0, GRID - 1) holds a black and a white half, so that a loader that stretches
  a file over its own range (16-bit PNG, DICOM) gives back exactly the pixels written;
- every other cell is a blob detector: a cell mean above BLOB_LEVEL adds BLOB_GAIN * (mean - BLOB_LEVEL) to both
  subtype logits, so a planted bright blob drives P(pneumonia) up where it is, and Grad-CAM must find it.

The card says temperature TEMPERATURE, threshold THRESHOLD and subtype margin MARGIN, so `film()` makes a film read
NORMAL or PNEUMONIA at any P, exactly at a threshold, and BACTERIAL or VIRAL with a clear or a close margin, and
`expected_probabilities()` says, from a decoded film, what a correct product must report.

The model contract (cxr_core.model.architecture): input "image", a pooling layer (LayerCAM's detail layer "film"),
`cam_features` (GRID x GRID x 4: three code channels, non-zero only on their code cell, and the blob channel),
"gap", "head_dropout", a linear "logits" and a softmax: only standard layers, loadable with safe_mode=True.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np

SIZE, CELL = 64, 8
GRID = SIZE // CELL
SPAN = 40.0  # logit per unit of a code cell's mean
BLOB_LEVEL, BLOB_GAIN = 0.85, 40.0
TEMPERATURE = 2.0
THRESHOLD = 0.6
MARGIN = 0.5
MODEL_ID = "controlled-t2"
CODE_CELLS = ((0, 0), (0, 1), (0, 2))


def code_values(probs) -> np.ndarray:
    """The code cells' means that make the model (at TEMPERATURE) output `probs` (NORMAL, BACTERIAL, VIRAL)."""
    logits = TEMPERATURE * np.log(np.clip(np.asarray(probs, np.float64), 1e-12, 1.0))
    logits -= logits.mean()
    values = 0.5 + logits / SPAN
    if values.min() < 0.0 or values.max() > 1.0:
        raise ValueError(f"probabilities {probs} are too extreme for the code strip")
    return values


def target(p: float, subtype: str = "BACTERIAL", margin: float = 0.9) -> tuple[float, float, float]:
    """Class probabilities with P(pneumonia) = p, the likelier subtype `subtype` by `margin`
    (|P(b) - P(v)| / (P(b) + P(v)))."""
    share = (1 + margin) / 2 if subtype == "BACTERIAL" else (1 - margin) / 2
    return (1 - p, p * share, p * (1 - share))


def film(probs=(1 / 3, 1 / 3, 1 / 3), blob: tuple[int, int] | None = None, seed: int = 0,
         adult: bool = False) -> np.ndarray:
    """A chest-like phantom in [0, 1] with its code strip set for `probs` and, optionally, a bright blob filling
    cell `blob` (row, col; row >= 1). `adult`: a phantom twice as zoomed (wide lungs filling the film), which the
    model's population check (fitted on these phantoms) flags as adult."""
    import cv2

    from .synthetic import phantom_cxr

    rng = np.random.default_rng(seed)
    if adult:
        big = phantom_cxr(2 * SIZE, rng, 0)
        img = cv2.resize(big[SIZE // 2:3 * SIZE // 2, SIZE // 2:3 * SIZE // 2], (SIZE, SIZE)).astype(np.float64)
    else:
        img = phantom_cxr(SIZE, rng, 0).astype(np.float64)
    img[:CELL] = 0.5
    for (r, c), v in zip(CODE_CELLS, code_values(probs)):
        img[r * CELL:(r + 1) * CELL, c * CELL:(c + 1) * CELL] = v
    ref = (GRID - 1) * CELL
    img[:CELL, ref:ref + CELL // 2], img[:CELL, ref + CELL // 2:] = 0.0, 1.0
    if blob is not None:
        r, c = blob
        assert r >= 1, "row 0 is the code strip"
        img[r * CELL:(r + 1) * CELL, c * CELL:(c + 1) * CELL] = 1.0
    return img.astype(np.float32)


def cells(model_input: np.ndarray) -> np.ndarray:
    x = np.asarray(model_input, np.float64).reshape(SIZE, SIZE)
    return x.reshape(GRID, CELL, GRID, CELL).mean(axis=(1, 3))


def expected_logits(model_input: np.ndarray) -> np.ndarray:
    """What the model computes from one (SIZE, SIZE[, 1]) model input, in numpy."""
    c = cells(model_input)
    blob = np.maximum(c[1:] - BLOB_LEVEL, 0.0).sum()
    return np.array([SPAN * (c[0, 0] - 0.5), SPAN * (c[0, 1] - 0.5) + BLOB_GAIN * blob,
                     SPAN * (c[0, 2] - 0.5) + BLOB_GAIN * blob])


def expected_probabilities(model_input: np.ndarray, temperature: float = TEMPERATURE) -> np.ndarray:
    z = expected_logits(model_input) / temperature
    e = np.exp(z - z.max())
    return e / e.sum()


# ---- files
def png16(img: np.ndarray) -> bytes:
    """A 16-bit PNG: decodes (over its own 0..65535 range, which the reference cell spans) to `img` within 1/65535."""
    from .inputs import pil_bytes
    from PIL import Image

    return pil_bytes(Image.fromarray(np.round(np.clip(img, 0, 1) * 65535).astype(np.uint16)), "PNG")


def dicom(img: np.ndarray, **kw) -> bytes:
    """A DX chest PA DICOM (testkit/inputs.dicom) of `img` in 12 bits, windowed over its full range."""
    from . import inputs

    return inputs.dicom(array=np.round(np.clip(img, 0, 1) * 4095).astype(np.uint16), **kw)


# ---- the model folder
def build_model():
    import keras
    from keras import layers

    from cxr_core.model.architecture import CAM_LAYER, INPUT_LAYER, LOGITS_LAYER, OUTPUT_LAYER, POOL_LAYER

    n = GRID * GRID
    inputs = keras.Input((SIZE, SIZE, 1), name=INPUT_LAYER)
    # The identity, as a layer with a weight: the gradient tape records LayerCAM's path from a variable onwards.
    x = layers.Conv2D(1, 1, use_bias=False, kernel_initializer="ones", name="film")(inputs)
    cell_means = layers.Flatten(name="cells")(layers.AveragePooling2D(CELL, name="cells_pool")(x))
    code = layers.Dense(n * 3, name="code")(cell_means)
    blob = layers.Dense(n, activation="relu", name="blob")(cell_means)
    features = layers.Concatenate(name=CAM_LAYER)([layers.Reshape((GRID, GRID, 3), name="code_map")(code),
                                                   layers.Reshape((GRID, GRID, 1), name="blob_map")(blob)])
    pooled = layers.GlobalAveragePooling2D(name=POOL_LAYER)(features)
    logits_layer = layers.Dense(3, name=LOGITS_LAYER)
    logits = logits_layer(layers.Dropout(0.0, name="head_dropout")(pooled))
    model = keras.Model(inputs, layers.Softmax(name=OUTPUT_LAYER, dtype="float32")(logits), name="controlled")

    kernel, bias = np.zeros((n, n * 3), np.float32), np.zeros(n * 3, np.float32)
    for k, (r, c) in enumerate(CODE_CELLS):  # channel k lives on its code cell only; GAP divides by n
        out = (r * GRID + c) * 3 + k
        kernel[r * GRID + c, out], bias[out] = n * SPAN, -0.5 * n * SPAN
    model.get_layer("code").set_weights([kernel, bias])
    kernel, bias = np.zeros((n, n), np.float32), np.zeros(n, np.float32)
    for i in range(GRID, n):  # every cell below the code strip
        kernel[i, i], bias[i] = n, -BLOB_LEVEL * n
    model.get_layer("blob").set_weights([kernel, bias])
    head = np.zeros((4, 3), np.float32)
    head[0, 0] = head[1, 1] = head[2, 2] = 1.0
    head[3, 1] = head[3, 2] = BLOB_GAIN
    logits_layer.set_weights([head, np.zeros(3, np.float32)])
    return model


def guard_films(n: int, seed: int, adult: bool = False) -> list[np.ndarray]:
    """Films the guards are fitted and calibrated on: random codes over a wide range, a third with a blob."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        z = rng.uniform(-12.0, 12.0, 3) / TEMPERATURE  # logits over a box wider than any test's
        probs = np.exp(z - z.max()) / np.exp(z - z.max()).sum()
        blob = (int(rng.integers(1, GRID)), int(rng.integers(0, GRID))) if i % 3 == 0 else None
        out.append(film(probs, blob, seed=int(rng.integers(1 << 30)), adult=adult))
    return out


def write_model_folder(dest: Path, model_id: str = MODEL_ID, **card_fields) -> Path:
    """The controlled model as a complete model folder at `dest` (model, card, Markdown card, image guards and
    population check)."""
    import keras

    from cxr_core.inputs.preprocess import Preprocess
    from cxr_core.model.card import ModelCard
    from cxr_core.model.folder import ModelFolder
    from cxr_core.safety.ood import OODDetector
    from cxr_core.safety.population import fit_adult_check

    dest.mkdir(parents=True, exist_ok=True)
    folder = ModelFolder(dest)
    model = build_model()
    model.save(folder.model_file)
    gap = keras.Model(model.inputs, model.get_layer("gap").output)
    # The image guards model every film a test sends (children's and adults' phantoms), calibrated on held-out ones;
    # the population check tells the two apart (patient = film).
    kids, adults, held = (np.stack(guard_films(n, s, adult))[..., None] for n, s, adult in
                          ((150, 1, False), (60, 2, True), (150, 3, False)))
    fit = np.concatenate([kids, adults])
    OODDetector.fit(fit, gap.predict(fit, verbose=0), held, gap.predict(held, verbose=0)).save(folder.ood_file)
    check, _ = fit_adult_check(kids, [f"k{i}" for i in range(len(kids))], adults, [f"a{i}" for i in range(len(adults))])
    check.save(folder.population_file)
    card = ModelCard(model_id=model_id, name="controlled", version="1",
                     description="Test model whose output is a known function of a code drawn on the film.",
                     input=Preprocess(SIZE, False, "none").card_input(), threshold=THRESHOLD,
                     threshold_policy="fixed (test model)", temperature=TEMPERATURE,
                     subtype_policy={"margin": MARGIN, "n_pneumonia": 0, "precision_target": 0.85, "precision": 0.85,
                                     "precision_all": 0.5, "stated_fraction": 0.5, "fitted_on": "set by the test"}, validation_gate={"passed": True})
    folder.write_card(card.with_fields(**card_fields) if card_fields else card)
    return dest


def variant(source: Path, dest: Path, **card_fields) -> Path:
    """A copy of a model folder with some card fields changed (another model id, another intensity policy...)."""
    from cxr_core.model.folder import ModelFolder

    shutil.copytree(source, dest)
    ModelFolder(dest).update_card(**card_fields)
    return dest


def labelled_folder(root: Path, answers: list[tuple[str, float]], seed: int = 0) -> Path:
    """A Kaggle-layout folder (NORMAL/, PNEUMONIA/) of controlled films, one per (true label, P(pneumonia) the model
    will answer), each its own patient, as 16-bit PNGs: a local evaluation whose every figure the test knows."""
    from cxr_core.validation.dataset import kaggle_name

    for i, (label, p) in enumerate(answers):
        folder, name = kaggle_name(label, i + 1)
        (root / folder).mkdir(parents=True, exist_ok=True)
        (root / folder / name).write_bytes(png16(film(target(p), seed=seed + i)))
    return root
