"""Concurrency of the case store: N sessions (separate processes, as separate workstations or app servers
would be) each add and review cases in the same database at once; nothing may be lost.

    python bench/cases.py [--sessions 8] [--cases 25] [--database-url URL] [--save]

Without --database-url it uses a fresh SQLite database (WAL) in a temp $CXR_HOME. Prints the errors, the
cases, reviews and audit events found against those expected, throughput, and p50/p95 latency of an add
(PNG write + commit) and of a review. Bounded: sessions x cases adds and reviews in all.
"""

from __future__ import annotations

import argparse
import time
from concurrent.futures import ProcessPoolExecutor

from _common import emit, pct, use_temporary_home


def _prediction(seed: int):
    """A decoded result as the Viewer stores it, without a model (this measures the store, not inference)."""
    import numpy as np

    from cxr_core.imaging import LoadedImage
    from cxr_core.predict import Prediction
    from tests.synthetic import phantom_cxr

    rng = np.random.default_rng(seed)
    p = float(rng.uniform())
    return Prediction(file=f"bench-{seed}.png", label="PNEUMONIA" if p >= 0.5 else "NORMAL", pneumonia_probability=p,
                      subtype="BACTERIAL" if p >= 0.5 else None,
                      class_probabilities={"NORMAL": 1 - p, "BACTERIAL": p * 0.6, "VIRAL": p * 0.4}, threshold=0.5,
                      assessed=True, heatmap=rng.uniform(size=(7, 7)).astype(np.float32),
                      image=LoadedImage(pixels=phantom_cxr(224, rng, seed % 3), format="PNG", metadata={}, identifiers={}))


def session(index: int, n: int, url: str | None) -> tuple[list[float], list[float], list[str]]:
    """One session: add n distinct cases, reviewing each right after; (add latencies, review latencies, errors)."""
    from cxr_core.cases import CaseStore

    store = CaseStore.open(url)
    adds, reviews, errors = [], [], []
    for k in range(n):
        seed = index * 100_000 + k
        pred = _prediction(seed)
        try:
            t0 = time.perf_counter()
            case_id, _ = store.add(pred, f"bench image {seed}".encode(), "bench-model", actor=f"session{index}")
            t1 = time.perf_counter()
            store.review(case_id, "agree", "NORMAL" if pred.label == "NORMAL" else "BACTERIAL", f"reader{index}")
            t2 = time.perf_counter()
            adds.append(t1 - t0)
            reviews.append(t2 - t1)
        except Exception as exc:  # counted and printed: the figure is "errors: 0"
            errors.append(f"{type(exc).__name__}: {exc}")
    return adds, reviews, errors


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=8)
    parser.add_argument("--cases", type=int, default=25, help="cases each session adds and reviews")
    parser.add_argument("--database-url", default=None, help="e.g. postgresql+psycopg://user@127.0.0.1:5432/cases")
    args = parser.parse_args()
    use_temporary_home("cxr_bench_cases_")  # images (and SQLite) never in a real home; the URL only when given

    from cxr_core.cases import CaseStore

    CaseStore.open(args.database_url)  # migrate once before the sessions start
    started = time.perf_counter()
    with ProcessPoolExecutor(args.sessions) as pool:
        results = list(pool.map(session, range(args.sessions), [args.cases] * args.sessions,
                                [args.database_url] * args.sessions))
    wall = time.perf_counter() - started
    adds = [x for r in results for x in r[0]]
    reviews = [x for r in results for x in r[1]]
    errors = [e for r in results for e in r[2]]
    store = CaseStore.open(args.database_url)
    cases = store.list()
    audit = store.audit()
    expected = args.sessions * args.cases
    emit("database", "PostgreSQL" if args.database_url and "postgresql" in args.database_url else "SQLite (WAL)")
    emit("sessions", str(args.sessions))
    emit("errors", str(len(errors)))
    for e in errors[:5]:
        print(f"  {e}")
    emit("cases_stored_of_expected", f"{len(cases)} of {expected}")
    emit("cases_reviewed_of_expected", f"{sum(c['review'] is not None for c in cases)} of {expected}")
    emit("audit_events_of_expected", f"{len(audit)} of {2 * expected}")
    emit("lost_cases", str(expected - len(cases)))
    emit("throughput_add_and_review_per_s", expected / wall, "case/s")
    emit("add_latency_p50_s", pct(adds, 50), "s")
    emit("add_latency_p95_s", pct(adds, 95), "s")
    emit("review_latency_p50_s", pct(reviews, 50), "s")
    emit("review_latency_p95_s", pct(reviews, 95), "s")


if __name__ == "__main__":
    main()
