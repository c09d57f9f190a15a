"""A foreign-input set: images that are not frontal chest radiographs, synthesised here, for the input guards'
tests and bench/ood.py. Never used to fit or calibrate a guard (the guards see chest films only).

Kinds (each drawn from a seeded generator, varied in size, contrast, blur, noise and file format):
- text_page: a rendered page of text (several fonts and sizes), clean, grey or noisy, or photographed (tilted
  in perspective on a desk, uneven light, blur, JPEG);
- screenshot: windows, title bars, buttons, text boxes;
- chart and table: matplotlib line / bar / scatter / pie charts and tables, saved grey;
- shapes: procedurally drawn shapes and line drawings;
- ct_head_phantom: a Shepp-Logan-like head phantom of ellipses on black, stored as RGB with equal channels;
- texture: synthesised natural textures (fractal noise, grain, fabric);
- photo: synthesised photographs (lit objects on a background), including a motion-blurred round object on grey;
- ct_slice and mr_slice: synthesised axial CT (chest, abdomen) and MR (brain) slices;
- limb_film: radiograph-like films of another body part (hand, forearm, knee).

    foreign_set(per_kind, seed) -> [(kind, encoded bytes), ...]
"""

from __future__ import annotations

import io
from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np

FOREIGN_KINDS = ("text_page", "screenshot", "chart", "table", "shapes", "ct_head_phantom", "texture", "photo",
                 "ct_slice", "mr_slice", "limb_film")
WORDS = ("the patient was seen in clinic today and reports cough fever for three days no history of asthma plan "
         "review results chest radiograph report impression findings normal lungs heart size within limits the "
         "quick brown fox jumps over lazy dog invoice total amount due date table figure page section methods "
         "results discussion conclusion 2026 12.5 mg kg daily follow up in two weeks").split()


@lru_cache(maxsize=None)
def _font_files() -> tuple[str, ...]:
    import matplotlib

    return tuple(sorted(str(p) for p in (Path(matplotlib.get_data_path()) / "fonts" / "ttf").glob("DejaVu*.ttf")))


def _font(rng: np.random.Generator, size: int):
    from PIL import ImageFont

    files = _font_files()
    if files:
        return ImageFont.truetype(str(rng.choice(files)), int(size))
    return ImageFont.load_default(size=int(size))


def _sentence(rng: np.random.Generator, n: int) -> str:
    return " ".join(rng.choice(WORDS, n))


def _noise(img: np.ndarray, rng: np.random.Generator, sigma: float) -> np.ndarray:
    return np.clip(img.astype(np.float32) + rng.normal(0, sigma, img.shape), 0, 255).astype(np.uint8)


def _page(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    from PIL import Image, ImageDraw

    paper, ink = int(rng.integers(200, 256)), int(rng.integers(0, 80))
    im = Image.new("L", (w, h), paper)
    d = ImageDraw.Draw(im)
    size = int(rng.integers(9, 30))
    y = int(rng.integers(10, 40))
    margin = int(rng.integers(10, 50))
    if rng.random() < 0.6:  # a heading
        d.text((margin, y), _sentence(rng, 3).title(), fill=ink, font=_font(rng, size * 1.6))
        y += int(size * 2.4)
    font = _font(rng, size)
    while y < h - size:
        line = _sentence(rng, int(rng.integers(3, 14)))
        d.text((margin, y), line, fill=ink, font=font)
        y += int(size * rng.uniform(1.2, 1.8)) + (size if rng.random() < 0.12 else 0)  # paragraph breaks
    return np.asarray(im)


def text_page(rng: np.random.Generator) -> np.ndarray:
    h, w = int(rng.integers(300, 520)), int(rng.integers(240, 420))
    page = _page(rng, h, w)
    style = rng.choice(["clean", "grey", "noisy", "photographed"])
    if style == "grey":
        page = (page.astype(np.float32) * rng.uniform(0.5, 0.8) + rng.uniform(20, 60)).astype(np.uint8)
    elif style == "noisy":
        page = _noise(cv2.GaussianBlur(page, (0, 0), rng.uniform(0.3, 1.2)), rng, rng.uniform(8, 25))
    elif style == "photographed":
        page = photographed(page, rng)
    return page


def photographed(page: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A page as a phone photographs it: on a darker desk, in perspective, unevenly lit, slightly blurred."""
    h, w = page.shape
    H, W = int(h * rng.uniform(1.1, 1.4)), int(w * rng.uniform(1.1, 1.4))
    j = lambda s: rng.uniform(-s, s)  # noqa: E731
    dst = np.float32([[W * 0.1 + j(20), H * 0.08 + j(20)], [W * 0.9 + j(20), H * 0.1 + j(20)],
                      [W * 0.92 + j(20), H * 0.92 + j(20)], [W * 0.08 + j(20), H * 0.9 + j(20)]])
    m = cv2.getPerspectiveTransform(np.float32([[0, 0], [w, 0], [w, h], [0, h]]), dst)
    desk = cv2.GaussianBlur(rng.normal(rng.uniform(40, 120), 15, (H, W)).astype(np.float32), (0, 0), 6)
    warped = cv2.warpPerspective(page.astype(np.float32), m, (W, H), borderValue=-1)
    out = np.where(warped >= 0, warped, desk)
    yy, xx = np.mgrid[:H, :W] / max(H, W)
    light = 1 - rng.uniform(0.1, 0.4) * ((xx - rng.random()) ** 2 + (yy - rng.random()) ** 2)
    out = cv2.GaussianBlur(out * light, (0, 0), rng.uniform(0.5, 1.5))
    return _noise(np.clip(out, 0, 255), rng, rng.uniform(2, 8))


def screenshot(rng: np.random.Generator) -> np.ndarray:
    from PIL import Image, ImageDraw

    w, h = int(rng.integers(360, 560)), int(rng.integers(260, 420))
    im = Image.new("L", (w, h), int(rng.integers(180, 250)))
    d = ImageDraw.Draw(im)
    font = _font(rng, int(rng.integers(9, 15)))
    d.rectangle([0, 0, w, 22], fill=int(rng.integers(30, 120)))  # title bar
    d.text((8, 4), _sentence(rng, 3), fill=240, font=font)
    d.rectangle([0, 22, int(rng.integers(80, 140)), h], fill=int(rng.integers(150, 220)))  # side panel
    for y in range(34, h - 20, 22):
        d.text((8, y), _sentence(rng, 2), fill=20, font=font)
    for _ in range(int(rng.integers(3, 8))):  # buttons, fields, panes
        x0, y0 = int(rng.integers(150, w - 100)), int(rng.integers(30, h - 40))
        x1, y1 = min(w - 5, x0 + int(rng.integers(60, 200))), min(h - 5, y0 + int(rng.integers(20, 90)))
        d.rectangle([x0, y0, x1, y1], fill=int(rng.integers(200, 256)), outline=int(rng.integers(0, 120)))
        d.text((x0 + 4, y0 + 4), _sentence(rng, 2), fill=10, font=font)
    return np.asarray(im)


def _figure_to_gray(fig) -> np.ndarray:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=int(fig.dpi))
    plt.close(fig)
    return cv2.imdecode(np.frombuffer(buf.getvalue(), np.uint8), cv2.IMREAD_GRAYSCALE)


def chart(rng: np.random.Generator) -> np.ndarray:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(rng.uniform(3, 5), rng.uniform(2.5, 4)), dpi=90)
    kind = rng.choice(["line", "bar", "scatter", "pie", "hist"])
    x = np.arange(int(rng.integers(5, 30)))
    if kind == "line":
        for _ in range(int(rng.integers(1, 4))):
            ax.plot(x, np.cumsum(rng.normal(0, 1, len(x))), marker=rng.choice(["", "o", "s"]))
        ax.grid(rng.random() < 0.5)
    elif kind == "bar":
        ax.bar(x[:12], rng.uniform(1, 10, min(12, len(x))))
    elif kind == "scatter":
        ax.scatter(rng.normal(0, 1, 200), rng.normal(0, 1, 200), s=8)
    elif kind == "pie":
        ax.pie(rng.uniform(1, 5, 5), labels=list("ABCDE"))
    else:
        ax.hist(rng.normal(0, 1, 500), bins=int(rng.integers(10, 40)))
    ax.set_title(_sentence(rng, 3))
    return _figure_to_gray(fig)


def table(rng: np.random.Generator) -> np.ndarray:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows, cols = int(rng.integers(5, 16)), int(rng.integers(3, 7))
    fig, ax = plt.subplots(figsize=(rng.uniform(3.5, 5.5), rng.uniform(2.5, 4.5)), dpi=90)
    ax.axis("off")
    cells = [[f"{v:.{int(rng.integers(0, 3))}f}" for v in rng.uniform(0, 500, cols)] for _ in range(rows)]
    t = ax.table(cellText=cells, colLabels=[w.title() for w in rng.choice(WORDS, cols)], loc="center")
    t.scale(1, rng.uniform(1.0, 1.6))
    return _figure_to_gray(fig)


def shapes(rng: np.random.Generator) -> np.ndarray:
    size = int(rng.integers(256, 448))
    img = np.full((size, size), float(rng.integers(0, 256)), np.float32)
    for _ in range(int(rng.integers(4, 14))):
        value, kind = float(rng.integers(0, 256)), rng.integers(0, 4)
        c = tuple(int(v) for v in rng.integers(0, size, 2))
        thick = -1 if rng.random() < 0.6 else int(rng.integers(1, 6))
        if kind == 0:
            cv2.circle(img, c, int(rng.integers(size // 20, size // 4)), value, thick)
        elif kind == 1:
            cv2.rectangle(img, c, tuple(int(v) for v in rng.integers(0, size, 2)), value, thick)
        elif kind == 2:
            cv2.line(img, c, tuple(int(v) for v in rng.integers(0, size, 2)), value, int(rng.integers(1, 8)))
        else:
            pts = rng.integers(0, size, (int(rng.integers(3, 7)), 2)).astype(np.int32)
            cv2.fillPoly(img, [pts], value) if thick < 0 else cv2.polylines(img, [pts], True, value, thick)
    return img.astype(np.uint8)


def _ellipse(yy, xx, cy, cx, a, b, angle):
    t = np.deg2rad(angle)
    u, v = (xx - cx) * np.cos(t) + (yy - cy) * np.sin(t), -(xx - cx) * np.sin(t) + (yy - cy) * np.cos(t)
    return (u / a) ** 2 + (v / b) ** 2 <= 1


def ct_head_phantom(rng: np.random.Generator) -> np.ndarray:
    """Shepp-Logan-like: skull ellipse, brain, ventricles and small lesions, on black; RGB with equal channels."""
    size = int(rng.integers(256, 512))
    yy, xx = np.mgrid[-1:1:size * 1j, -1:1:size * 1j]
    s = rng.uniform(0.8, 1.0)
    img = np.zeros((size, size), np.float32)
    img[_ellipse(yy, xx, 0, 0, 0.69 * s, 0.92 * s, 0)] = 1.0
    img[_ellipse(yy, xx, -0.018 * s, 0, 0.66 * s, 0.87 * s, 0)] = rng.uniform(0.2, 0.4)
    for cx, a, ang in ((0.22, 0.11, -18), (-0.22, 0.16, 18)):
        img[_ellipse(yy, xx, 0, cx * s, a * s, 0.31 * s, ang)] = rng.uniform(0.0, 0.15)
    for _ in range(int(rng.integers(2, 6))):
        img[_ellipse(yy, xx, rng.uniform(-0.6, 0.6) * s, rng.uniform(-0.4, 0.4) * s, rng.uniform(0.02, 0.1),
                     rng.uniform(0.02, 0.12), rng.uniform(0, 180))] = rng.uniform(0.3, 0.6)
    img = cv2.GaussianBlur(img, (0, 0), rng.uniform(0.3, 1.5))
    gray = np.clip(img * 255 + rng.normal(0, rng.uniform(0, 6), img.shape), 0, 255).astype(np.uint8)
    return np.repeat(gray[..., None], 3, axis=2)


def _fractal(rng: np.random.Generator, size: int, beta: float) -> np.ndarray:
    """1/f^beta noise in [0, 1]: clouds, rock, bark..."""
    f = np.fft.fftfreq(size)
    radius = np.sqrt(f[:, None] ** 2 + f[None] ** 2)
    radius[0, 0] = 1
    spectrum = (rng.normal(size=(size, size)) + 1j * rng.normal(size=(size, size))) / radius ** beta
    field = np.real(np.fft.ifft2(spectrum))
    return ((field - field.min()) / (np.ptp(field) + 1e-9)).astype(np.float32)


def texture(rng: np.random.Generator) -> np.ndarray:
    size = int(rng.choice([256, 320, 384]))
    kind = rng.integers(0, 3)
    if kind == 0:  # clouds / stone
        img = _fractal(rng, size, rng.uniform(0.8, 1.6))
    elif kind == 1:  # wood grain: stretched noise through a sine
        img = cv2.resize(_fractal(rng, size, 1.2), (size, size // 8))
        img = cv2.resize(img, (size, size))
        yy = np.mgrid[:size, :size][0] / size
        img = 0.5 + 0.5 * np.sin(2 * np.pi * (yy * rng.uniform(8, 20) + 3 * img))
    else:  # woven fabric
        yy, xx = np.mgrid[:size, :size]
        p = rng.uniform(4, 10)
        img = 0.5 + 0.25 * (np.sin(xx / p * np.pi) * np.sign(np.sin(yy / p * np.pi / 2))) + 0.2 * _fractal(rng, size, 1.0)
    return (np.clip(img, 0, 1) * 255).astype(np.uint8)


def photo(rng: np.random.Generator) -> np.ndarray:
    """A synthesised photograph: lit objects on a background, or a motion-blurred round object on grey."""
    h, w = int(rng.integers(240, 400)), int(rng.integers(300, 480))
    yy, xx = np.mgrid[:h, :w].astype(np.float32)
    if rng.random() < 0.5:  # a round object (ball, plate, fruit) on a plain grey background, motion-blurred
        img = np.full((h, w), rng.uniform(90, 170), np.float32) + 10 * _fractal(rng, max(h, w), 1.5)[:h, :w]
        cy, cx, r = h * rng.uniform(0.3, 0.7), w * rng.uniform(0.3, 0.7), min(h, w) * rng.uniform(0.15, 0.35)
        d = np.sqrt((yy - cy) ** 2 + (xx - cx) ** 2) / r
        shade = rng.uniform(20, 80) + rng.uniform(100, 170) * np.clip(1 - ((yy - cy + r / 3) ** 2 + (xx - cx + r / 3) ** 2) / (2 * r * r), 0, 1)
        img = np.where(d <= 1, shade, img)
        length = int(rng.integers(9, 31))
        kernel = np.zeros((length, length), np.float32)
        kernel[length // 2] = 1.0 / length
        m = cv2.getRotationMatrix2D((length / 2 - 0.5, length / 2 - 0.5), rng.uniform(0, 180), 1.0)
        kernel = cv2.warpAffine(kernel, m, (length, length))
        img = cv2.filter2D(img, -1, kernel / kernel.sum())
    else:  # a scene: sky gradient, ground, a few shaded objects
        img = np.where(yy < h * rng.uniform(0.4, 0.7), 200 - 80 * yy / h, 90 + 40 * _fractal(rng, max(h, w), 1.2)[:h, :w])
        for _ in range(int(rng.integers(2, 6))):
            cy, cx = rng.uniform(0.3, 0.9) * h, rng.uniform(0, 1) * w
            a, b = rng.uniform(20, 90), rng.uniform(20, 90)
            inside = ((yy - cy) / a) ** 2 + ((xx - cx) / b) ** 2 <= 1
            img = np.where(inside, rng.uniform(20, 230) - 40 * (xx - cx) / b, img)
        img = cv2.GaussianBlur(img.astype(np.float32), (0, 0), rng.uniform(0.8, 2.0))
    return _noise(np.clip(img, 0, 255), rng, rng.uniform(2, 6))


def ct_slice(rng: np.random.Generator) -> np.ndarray:
    """Axial CT of the chest or abdomen: body outline, fat rim, lungs or organs, spine, on black in a round field."""
    size = int(rng.choice([256, 384, 512]))
    yy, xx = np.mgrid[-1:1:size * 1j, -1:1:size * 1j]
    img = np.zeros((size, size), np.float32)
    a, b = rng.uniform(0.75, 0.9), rng.uniform(0.5, 0.65)  # half-width, half-height
    img[_ellipse(yy, xx, 0.05, 0, a, b, 0)] = 0.35  # fat
    img[_ellipse(yy, xx, 0.05, 0, a * 0.92, b * 0.92, 0)] = 0.5  # soft tissue
    if rng.random() < 0.5:  # chest: two lungs and a heart
        lung_texture = _fractal(rng, size, 1.8)
        for cx in (-0.4, 0.4):
            lung = _ellipse(yy, xx, 0.0, cx * a, a * 0.33, b * 0.7, 0)
            img[lung] = 0.05 + 0.05 * lung_texture[lung]
        img[_ellipse(yy, xx, 0.05, 0.08, a * 0.25, b * 0.4, 30)] = 0.55
    else:  # abdomen: liver, kidneys, bowel gas
        img[_ellipse(yy, xx, -0.05, -0.3 * a, a * 0.35, b * 0.5, 10)] = 0.58
        for cx in (-0.3, 0.3):
            img[_ellipse(yy, xx, 0.25, cx * a, 0.08, 0.12, 0)] = 0.62
        for _ in range(int(rng.integers(3, 9))):
            img[_ellipse(yy, xx, rng.uniform(-0.3, 0.3), rng.uniform(-0.4, 0.4), rng.uniform(0.02, 0.07),
                         rng.uniform(0.02, 0.07), 0)] = 0.02
    img[_ellipse(yy, xx, b * 0.75, 0, 0.08, 0.09, 0)] = 0.95  # vertebra
    img[_ellipse(yy, xx, -b * 0.8, 0, 0.1, 0.03, 0)] += 0.3 * (rng.random() < 0.5)  # sternum
    img = img + rng.normal(0, rng.uniform(0.01, 0.04), img.shape)
    img[xx ** 2 + yy ** 2 > 0.98] = 0.0
    return (np.clip(cv2.GaussianBlur(img, (0, 0), 0.8), 0, 1) * 255).astype(np.uint8)


def mr_slice(rng: np.random.Generator) -> np.ndarray:
    """Axial brain MR: scalp, dark skull, folded grey / white matter, ventricles, on black."""
    size = int(rng.choice([256, 320]))
    yy, xx = np.mgrid[-1:1:size * 1j, -1:1:size * 1j]
    a, b = rng.uniform(0.7, 0.8), rng.uniform(0.85, 0.95)
    img = np.zeros((size, size), np.float32)
    img[_ellipse(yy, xx, 0, 0, b, a, 0)] = 0.8  # scalp
    img[_ellipse(yy, xx, 0, 0, b * 0.95, a * 0.94, 0)] = 0.08  # skull
    brain = _ellipse(yy, xx, 0, 0, b * 0.9, a * 0.88, 0)
    folds = _fractal(rng, size, 1.0)
    img[brain] = np.where(folds[brain] > rng.uniform(0.45, 0.55), 0.7, 0.45)  # white / grey matter
    for cx in (-0.1, 0.1):
        img[_ellipse(yy, xx, -0.05, cx, 0.25, 0.06, 8 if cx > 0 else -8)] = 0.12  # ventricles (T1: dark CSF)
    if rng.random() < 0.5:
        img = np.where(img > 0, 1.0 - img * 0.9, 0.0)  # T2-like contrast
    img = img * (1 - 0.3 * (yy + 1) / 2 * rng.random())  # coil shading
    img = np.abs(img + rng.normal(0, 0.03, img.shape))  # Rician-like noise floor
    return (np.clip(cv2.GaussianBlur(img.astype(np.float32), (0, 0), 0.7), 0, 1) * 255).astype(np.uint8)


def limb_film(rng: np.random.Generator) -> np.ndarray:
    """A radiograph of another body part: a hand (five rays of bones), a forearm or a knee, bright on dark."""
    h, w = int(rng.integers(300, 480)), int(rng.integers(240, 400))
    img = np.full((h, w), rng.uniform(0.02, 0.12), np.float32)
    kind = rng.choice(["hand", "forearm", "knee"])
    if kind == "hand":
        cv2.ellipse(img, (w // 2, int(h * 0.78)), (int(w * 0.28), int(h * 0.2)), 0, 0, 360, 0.35, -1)  # palm
        for i, angle in enumerate(np.linspace(-35, 35, 5) + rng.normal(0, 3, 5)):
            t = np.deg2rad(angle)
            x0, y0 = w / 2 + (i - 2) * w * 0.09, h * 0.7
            length = h * (0.5 if 0 < i < 4 else 0.35)
            x1, y1 = x0 + np.sin(t) * length, y0 - np.cos(t) * length
            cv2.line(img, (int(x0), int(y0)), (int(x1), int(y1)), 0.35, int(w * 0.07))  # soft tissue
            for k in range(3):  # phalanges with joints
                f0, f1 = k / 3 + 0.03, (k + 1) / 3 - 0.03
                cv2.line(img, (int(x0 + (x1 - x0) * f0), int(y0 + (y1 - y0) * f0)),
                         (int(x0 + (x1 - x0) * f1), int(y0 + (y1 - y0) * f1)), 0.85, int(w * 0.035))
    else:
        bones = 2 if kind == "forearm" else 1
        cv2.rectangle(img, (int(w * 0.25), 0), (int(w * 0.75), h), 0.35, -1)
        for j in range(bones):
            x = int(w * (0.4 + 0.2 * j if bones == 2 else 0.5))
            cv2.line(img, (x, 0), (x, h), 0.85, int(w * (0.08 if bones == 2 else 0.16)))
            cv2.line(img, (x, 0), (x, h), 0.55, int(w * (0.03 if bones == 2 else 0.07)))  # medullary canal
        if kind == "knee":
            cv2.ellipse(img, (w // 2, h // 2 - 8), (int(w * 0.2), int(h * 0.06)), 0, 0, 180, 0.9, -1)
            img[h // 2 - 4:h // 2 + 4] *= 0.5  # joint space
    img = cv2.GaussianBlur(img, (0, 0), rng.uniform(1.0, 2.5)) + rng.normal(0, 0.02, img.shape)
    m = cv2.getRotationMatrix2D((w / 2, h / 2), rng.uniform(-20, 20), 1.0)
    return (np.clip(cv2.warpAffine(img, m, (w, h), borderMode=cv2.BORDER_REPLICATE), 0, 1) * 255).astype(np.uint8)


GENERATORS = {"text_page": text_page, "screenshot": screenshot, "chart": chart, "table": table, "shapes": shapes,
              "ct_head_phantom": ct_head_phantom, "texture": texture, "photo": photo, "ct_slice": ct_slice,
              "mr_slice": mr_slice, "limb_film": limb_film}
assert tuple(GENERATORS) == FOREIGN_KINDS


def foreign_image(kind: str, rng: np.random.Generator) -> np.ndarray:
    """One uint8 image (H x W, or H x W x 3 with equal channels) of `kind`."""
    if kind not in GENERATORS:
        raise ValueError(f"unknown foreign kind {kind!r}: expected one of {FOREIGN_KINDS}")
    return GENERATORS[kind](rng)


def encode(image: np.ndarray, rng: np.random.Generator, kind: str = "") -> bytes:
    """As a file would arrive: photographs and photographed pages mostly as JPEG, the rest as PNG."""
    jpeg = rng.random() < (0.8 if kind in ("photo", "text_page", "texture") else 0.2)
    ok, data = cv2.imencode(".jpg" if jpeg else ".png", image, [cv2.IMWRITE_JPEG_QUALITY, int(rng.integers(60, 95))] if jpeg else [])
    assert ok
    return data.tobytes()


def foreign_set(per_kind: int = 24, seed: int = 0, kinds: tuple[str, ...] = FOREIGN_KINDS) -> list[tuple[str, bytes]]:
    """`per_kind` encoded files of each kind, reproducible from `seed`."""
    out = []
    for k, kind in enumerate(kinds):
        rng = np.random.default_rng([seed, k])
        out += [(kind, encode(foreign_image(kind, rng), rng, kind)) for _ in range(per_kind)]
    return out
