"""Concurrency and size of the case store: N sessions (separate processes, as separate workstations or app
servers would be) each add and review cases in the same database at once; nothing may be lost.

    python bench/cases.py [--database sqlite|postgresql|both] [--database-url URL] [--sessions 8] [--cases 25] [--save]

`sqlite`: a fresh SQLite database (WAL) in a temp $CXR_HOME. `postgresql`: a throwaway PostgreSQL server the
bench starts on loopback itself (Debian's postgresql; testkit/harness.py), or the server `--database-url` names.
For each: the errors, the cases, reviews and audit events found against those expected, throughput, p50/p95
latency of an add (pictures + case + audit in one commit) and of a review, and what a case costs in the
database (its growth divided by the cases, pictures included). The case pictures are real 224-px training films
where ../shared is present. Last, the cost of one full-size detector film (2,000 x 2,500 px) in SQLite.
"""

from __future__ import annotations

import argparse
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from _common import SHARED_TRAIN, emit, pct, use_temporary_home


def _film(seed: int, size: tuple[int, int] | None = None):
    """A film's pixels in [0, 1]: a real training image when ../shared is present, else a phantom; `size`
    (h, w) resamples it with detector noise, as a full-size film is stored."""
    import cv2
    import numpy as np

    from testkit.synthetic import phantom_cxr

    rng = np.random.default_rng(seed)
    if SHARED_TRAIN.is_dir():
        files = sorted(SHARED_TRAIN.rglob("*.jpeg"))
        pixels = cv2.imread(str(files[seed % len(files)]), cv2.IMREAD_GRAYSCALE).astype(np.float32) / 255.0
    else:
        pixels = phantom_cxr(224, rng, seed % 3)
    if size is not None:
        pixels = cv2.resize(pixels, (size[1], size[0]), interpolation=cv2.INTER_CUBIC)
        pixels = np.clip(pixels + rng.normal(0, 2 / 255, pixels.shape), 0, 1).astype(np.float32)
    return pixels


def _prediction(seed: int, size: tuple[int, int] | None = None):
    """A decoded result as the Viewer stores it, without a model (this measures the store, not inference)."""
    import numpy as np

    from cxr_core.inputs.imaging import LoadedImage
    from cxr_core.model.decision import label
    from cxr_core.model.predict import Prediction

    rng = np.random.default_rng(seed)
    p = float(rng.uniform())
    decided = label(p, 0.5)
    return Prediction(file=f"bench-{seed}.png", label=decided, pneumonia_probability=p,
                      subtype="BACTERIAL" if decided == "PNEUMONIA" else None,
                      class_probabilities={"NORMAL": 1 - p, "BACTERIAL": p * 0.6, "VIRAL": p * 0.4}, threshold=0.5,
                      assessed=True, heatmap=rng.uniform(size=(7, 7)).astype(np.float32),
                      image=LoadedImage(pixels=_film(seed, size), format="PNG", metadata={}, identifiers={}))


def session(index: int, n: int, url: str) -> tuple[list[float], list[float], list[str]]:
    """One session: add n distinct cases, reviewing each right after; (add latencies, review latencies, errors)."""
    from cxr_core.cases.store import CaseStore

    store = CaseStore.open(url)
    adds, reviews, errors = [], [], []
    for k in range(n):
        seed = index * 100_000 + k
        pred = _prediction(seed)
        try:
            t0 = time.perf_counter()
            case_id, _ = store.add(pred, f"bench image {seed}".encode(), "bench-model", actor=f"session{index}")
            t1 = time.perf_counter()
            store.review(case_id, "agree", "NORMAL" if pred.label == "NORMAL" else (pred.subtype or "BACTERIAL"),
                         f"reader{index}")
            t2 = time.perf_counter()
            adds.append(t1 - t0)
            reviews.append(t2 - t1)
        except Exception as exc:  # counted and printed: the figure is "errors: 0"
            errors.append(f"{type(exc).__name__}: {exc}")
    return adds, reviews, errors


def database_bytes(store, url: str) -> int:
    """What the database holds on disk now: SQLite's files (write-ahead log folded in), or PostgreSQL's size."""
    from sqlalchemy import text

    with store.engine.connect() as connection:
        if url.startswith("sqlite"):
            connection.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
            path = Path(url.removeprefix("sqlite:///"))
            return sum(p.stat().st_size for p in path.parent.glob(path.name + "*"))
        return int(connection.execute(text("SELECT pg_database_size(current_database())")).scalar_one())


def run(name: str, url: str, sessions: int, cases: int) -> None:
    from cxr_core.cases.store import CaseStore

    store = CaseStore.open(url)  # migrate once before the sessions start
    before = database_bytes(store, url)
    started = time.perf_counter()
    with ProcessPoolExecutor(sessions) as pool:
        results = list(pool.map(session, range(sessions), [cases] * sessions, [url] * sessions))
    wall = time.perf_counter() - started
    adds = [x for r in results for x in r[0]]
    reviews = [x for r in results for x in r[1]]
    errors = [e for r in results for e in r[2]]
    stored = store.list()
    audit = store.audit()
    expected = sessions * cases
    emit(f"{name}_sessions", str(sessions))
    emit(f"{name}_errors", str(len(errors)))
    for e in errors[:5]:
        print(f"  {e}")
    emit(f"{name}_cases_stored_of_expected", f"{len(stored)} of {expected}")
    emit(f"{name}_cases_reviewed_of_expected", f"{sum(c['review'] is not None for c in stored)} of {expected}")
    emit(f"{name}_audit_events_of_expected", f"{len(audit)} of {2 * expected}")
    emit(f"{name}_lost_cases", str(expected - len(stored)))
    emit(f"{name}_throughput_add_and_review_per_s", expected / wall, "case/s")
    emit(f"{name}_add_latency_p50_s", pct(adds, 50), "s")
    emit(f"{name}_add_latency_p95_s", pct(adds, 95), "s")
    emit(f"{name}_review_latency_p50_s", pct(reviews, 50), "s")
    emit(f"{name}_review_latency_p95_s", pct(reviews, 95), "s")
    emit(f"{name}_bytes_per_case_224px", (database_bytes(store, url) - before) / max(1, len(stored)), "B")
    store.engine.dispose()


def full_size_film_cost(n: int = 4) -> None:
    """Database growth per case for a 2,000 x 2,500 px film (a typical detector), in a fresh SQLite file."""
    import tempfile

    from cxr_core.cases.store import CaseStore

    url = f"sqlite:///{tempfile.mkdtemp(prefix='cxr_bench_full_')}/cases.db"
    store = CaseStore.open(url)
    before = database_bytes(store, url)
    for k in range(n):
        store.add(_prediction(900_000 + k, size=(2500, 2000)), f"full-size film {k}".encode(), "bench-model")
    emit("full_size_film_bytes_per_case", (database_bytes(store, url) - before) / n, "B")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database", choices=("sqlite", "postgresql", "both"), default="both")
    parser.add_argument("--database-url", default=None,
                        help="a PostgreSQL server to use instead of starting one, e.g. postgresql+psycopg://user@host/db")
    parser.add_argument("--sessions", type=int, default=8)
    parser.add_argument("--cases", type=int, default=25, help="cases each session adds and reviews")
    args = parser.parse_args()
    home = use_temporary_home("cxr_bench_cases_")  # never a real home or a shared hospital database
    emit("case_pictures", "real 224-px training films" if SHARED_TRAIN.is_dir() else "synthetic 224-px phantoms")
    if args.database in ("sqlite", "both"):
        run("sqlite", f"sqlite:///{home / 'cases.db'}", args.sessions, args.cases)
    if args.database in ("postgresql", "both"):
        if args.database_url:
            run("postgresql", args.database_url, args.sessions, args.cases)
        else:
            from testkit.harness import PostgresUnavailable, postgres_server

            try:
                with postgres_server() as url:
                    run("postgresql", url, args.sessions, args.cases)
            except PostgresUnavailable as exc:
                emit("postgresql", f"not measured: {exc}")
    full_size_film_cost()


if __name__ == "__main__":
    main()
