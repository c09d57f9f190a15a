"""Synthetic images for tests and benchmarks (bench/ imports this module): never for training a product.

- `blob_image`: a noisy background with, optionally, a bright Gaussian blob (Grad-CAM must find it).
- `phantom_cxr`: a crude chest-radiograph-like picture (two dark lung fields, bright mediastinum),
  with a bright consolidation (BACTERIAL) or diffuse haze (VIRAL) for a tiny learnable dataset.
- `non_xray`: inputs that are not chest radiographs (noise, blank, document, photograph, gradient).
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np


def blob_image(size: int, rng: np.random.Generator, with_blob: bool, radius: float | None = None) -> tuple[np.ndarray, tuple[int, int]]:
    """(image in [0,1], blob centre (row, col)); centre is (-1, -1) without a blob."""
    # A random background level, so that mean brightness cannot tell the classes apart: only the blob can.
    img = rng.uniform(0.15, 0.45) + 0.05 * rng.standard_normal((size, size))
    centre = (-1, -1)
    if with_blob:
        r = radius or size / 14
        cy, cx = (int(v) for v in rng.integers(int(r * 1.5), int(size - r * 1.5), 2))
        yy, xx = np.mgrid[:size, :size]
        img = img + 0.6 * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * r**2))
        centre = (cy, cx)
    return np.clip(img, 0, 1).astype(np.float32), centre


def phantom_cxr(size: int, rng: np.random.Generator, label: int = 0) -> np.ndarray:
    """A chest-like phantom in [0,1]; label 0 normal, 1 focal bright patch, 2 diffuse haze."""
    img = np.full((size, size), 0.75, np.float32)
    yy, xx = np.mgrid[:size, :size] / size
    for cx in (0.3, 0.7):
        lung = ((xx - cx) / 0.17) ** 2 + ((yy - 0.5) / 0.32) ** 2 < 1
        img[lung] = 0.25
    img += 0.03 * rng.standard_normal((size, size)).astype(np.float32)
    if label == 1:
        cx, cy = rng.choice([0.3, 0.7]) + rng.uniform(-0.05, 0.05), rng.uniform(0.35, 0.65)
        img += 0.45 * np.exp(-(((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * 0.06**2))).astype(np.float32)
    elif label == 2:
        img += 0.2 * (cv2.GaussianBlur(rng.random((size, size)).astype(np.float32), (0, 0), size / 12) > 0.5)
    return np.clip(img, 0, 1)


def non_xray(kind: str, size: int, rng: np.random.Generator) -> np.ndarray:
    """A grayscale [0,1] image that is not a chest radiograph."""
    if kind == "noise":
        return rng.random((size, size)).astype(np.float32)
    if kind == "blank":
        return np.full((size, size), float(rng.uniform(0.1, 0.9)), np.float32)
    if kind == "document":
        img = np.ones((size, size), np.float32)
        for row in range(size // 12, size - size // 12, max(6, size // 20)):
            x = size // 10
            while x < size - size // 10:
                w = int(rng.integers(size // 40 + 2, size // 8))
                img[row:row + max(2, size // 60), x:x + w] = 0.1
                x += w + size // 40 + 1
        return img
    if kind == "photo":  # smooth shapes and gradients, like a photograph turned gray
        img = np.outer(np.linspace(rng.uniform(0, 1), rng.uniform(0, 1), size), np.ones(size)).astype(np.float32)
        for _ in range(6):
            c = tuple(int(v) for v in rng.integers(0, size, 2))
            cv2.circle(img, c, int(rng.integers(size // 12, size // 3)), float(rng.random()), -1)
        return cv2.GaussianBlur(img, (0, 0), 2)
    if kind == "checker":
        k = max(2, size // 16)
        yy, xx = np.mgrid[:size, :size] // k
        return ((yy + xx) % 2).astype(np.float32)
    raise ValueError(f"unknown kind {kind!r}")


NON_XRAY_KINDS = ("noise", "blank", "document", "photo", "checker")


def write_kaggle_folder(root: str | Path, per_class: int, size: int = 64, seed: int = 0, patients_per_class: int | None = None) -> Path:
    """A tiny Kaggle-layout dataset of phantoms with real naming (NORMAL/IM-..., PNEUMONIA/personN_...)."""
    root = Path(root)
    rng = np.random.default_rng(seed)
    (root / "NORMAL").mkdir(parents=True, exist_ok=True)
    (root / "PNEUMONIA").mkdir(parents=True, exist_ok=True)
    n_pat = patients_per_class or max(2, per_class // 2)
    for i in range(per_class):
        pid = i % n_pat
        cv2.imwrite(str(root / "NORMAL" / f"IM-{pid:04d}-{i:04d}.jpeg"), (phantom_cxr(size, rng, 0) * 255).astype(np.uint8))
        cv2.imwrite(str(root / "PNEUMONIA" / f"person{pid + 1}_bacteria_{i}.jpeg"), (phantom_cxr(size, rng, 1) * 255).astype(np.uint8))
        cv2.imwrite(str(root / "PNEUMONIA" / f"person{pid + 1000}_virus_{i}.jpeg"), (phantom_cxr(size, rng, 2) * 255).astype(np.uint8))
    return root
