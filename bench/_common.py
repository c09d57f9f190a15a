"""Helpers shared by the benchmark scripts: sample images and simple statistics."""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
RESULTS_DIR = Path(__file__).resolve().parent / "results"
_RECORDED: list[str] = []
_RESULT_NAME: list[str] = []  # a script's mode that saves under another name (`save_as`)


def _save_at_exit() -> None:
    """With --save: the printed figures go to bench/results/<script>.txt, from which README.md is generated."""
    import atexit
    import os
    import time

    if "--save" not in sys.argv:
        return
    sys.argv.remove("--save")
    script = Path(sys.argv[0]).stem
    command = " ".join(["python", f"bench/{script}.py", *sys.argv[1:]])

    def write() -> None:
        RESULTS_DIR.mkdir(exist_ok=True)
        header = [f"command: {command}", f"measured_utc: {time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())}",
                  f"machine: {os.cpu_count()} CPU cores"]
        name = _RESULT_NAME[-1] if _RESULT_NAME else script
        (RESULTS_DIR / f"{name}.txt").write_text("\n".join(header + _RECORDED) + "\n")

    atexit.register(write)


_save_at_exit()


def save_as(name: str) -> None:
    """With --save, write this run's figures to bench/results/<name>.txt (a mode with a table of its own)."""
    _RESULT_NAME.append(name)
SHARED_TRAIN = ROOT.parent / "shared" / "data" / "kermany-cxr-224" / "train"
SITE_A = ROOT.parent / "shared" / "data" / "kermany-site-a"  # the external site (its README)


def use_temporary_home(prefix: str, keep_database_url: bool = False) -> Path:
    """Point $CXR_HOME (cases, images, evaluations) at a fresh temporary folder for this bench and the processes
    it starts, and drop the shell's CXR_DATABASE_URL unless the bench was given one on purpose: a bench never
    writes into a user's data or a shared hospital database."""
    import os

    home = Path(tempfile.mkdtemp(prefix=prefix))
    os.environ["CXR_HOME"] = str(home)
    if not keep_database_url:
        os.environ.pop("CXR_DATABASE_URL", None)
    return home


def sample_images(n: int, seed: int = 0) -> tuple[Path, str]:
    """A folder of n 224-px JPEGs: real training images when ../shared is present, else phantoms."""
    import cv2

    from testkit.synthetic import phantom_cxr

    out = Path(tempfile.mkdtemp(prefix="cxr_bench_"))
    if SHARED_TRAIN.is_dir():
        files = sorted(SHARED_TRAIN.rglob("*.jpeg"))
        rng = np.random.default_rng(seed)
        for i, f in enumerate(rng.choice(files, size=min(n, len(files)), replace=False)):
            (out / f"{i:04d}.jpeg").write_bytes(Path(f).read_bytes())
        return out, "real 224-px training JPEGs"
    rng = np.random.default_rng(seed)
    for i in range(n):
        cv2.imwrite(str(out / f"{i:04d}.jpeg"), (phantom_cxr(224, rng, i % 3) * 255).astype(np.uint8))
    return out, "synthetic 224-px phantoms"


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q))


def peak_rss_mb() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def emit(name: str, value: float | str, unit: str = "") -> None:
    line = f"{name}: {value:.4g}{(' ' + unit) if unit else ''}" if isinstance(value, float) else f"{name}: {value}"
    _RECORDED.append(line)
    print(line, flush=True)


def cell(flags: np.ndarray | None) -> str:
    """How many of a set of films a rule flags: "k/n rate [Wilson 95 %]" ("-" where not measured)."""
    from cxr_core.validation.metrics import wilson_interval

    if flags is None:
        return "-"
    k, n = int(np.sum(flags)), len(flags)
    low, high = wilson_interval(k, n)
    return f"{k}/{n} {k / n:.1%} [{low:.1%}, {high:.1%}]"
