"""Draw a grid of training films under each acquisition shift and severity, to check by eye that a
radiologist could still read them (the stress suite's severities must stay plausible).

    python bench/stress_grid.py [--out /tmp/stress_grid.png] [--shifts soft,glare] [--n 3]
"""

from __future__ import annotations

import argparse

import cv2
import numpy as np

from _common import SHARED_TRAIN

from cxr_core.validation.dataset import index_dataset
from cxr_core.inputs.imaging import load_image
from cxr_core.inputs.shifts import ACQUISITION, SEVERITIES, SHIFTS, image_rng


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="/tmp/stress_grid.png")
    parser.add_argument("--shifts", default=",".join(ACQUISITION))
    parser.add_argument("--n", type=int, default=2, help="films per class (NORMAL, PNEUMONIA)")
    args = parser.parse_args()
    if not SHARED_TRAIN.is_dir():
        raise SystemExit(f"The training data is not at {SHARED_TRAIN}.")
    records = index_dataset(SHARED_TRAIN)
    picked = [r for r in records if r.binary == 0][:: 400][: args.n] + [r for r in records if r.binary == 1][:: 900][: args.n]
    rows = []
    for name in args.shifts.split(","):
        for k, r in enumerate(picked):
            gray = cv2.resize(load_image(r.path).pixels, (224, 224), interpolation=cv2.INTER_AREA)
            tiles = [gray] + [SHIFTS[name](gray, s, image_rng(name, s, k)) for s in SEVERITIES]
            rows.append(np.hstack(tiles))
        print(f"{name}: {SHIFTS[name].description}")
    cv2.imwrite(args.out, (np.vstack(rows) * 255).round().astype(np.uint8))
    print(f"columns: clean, severity 1, 2, 3; rows: {len(picked)} films per shift -> {args.out}")


if __name__ == "__main__":
    main()
