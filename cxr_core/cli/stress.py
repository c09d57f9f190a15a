"""`stress`: re-score a labelled folder under acquisition shifts (robustness)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..errors import CXRError
from ..model.evidence import stress_rows
from ..model.predict import Predictor
from ..validation.stress import conditions, stress_folder
from ._common import add_model_option, print_json, status, command_request


def add_parser(sub: argparse._SubParsersAction) -> None:
    st = sub.add_parser("stress", help="re-score a labelled folder under acquisition shifts (robustness)")
    st.add_argument("data_dir", help="a labelled folder (NORMAL/ and PNEUMONIA/)")
    add_model_option(st)
    st.add_argument("--shifts", help="comma-separated shift names (default: all)")
    st.add_argument("--severities", default="1,2,3", help="comma-separated severities from 1 (mild) to 3 (severe)")
    st.add_argument("--json", action="store_true", help="print the result as one JSON object")
    st.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    shifts = [s.strip() for s in args.shifts.split(",")] if args.shifts else None
    try:
        severities = [int(s) for s in args.severities.split(",")]
        conditions(shifts, severities)
    except ValueError as exc:
        raise CXRError(f"--shifts/--severities: {exc}.") from None
    data_dir = Path(args.data_dir)
    if not data_dir.is_dir():
        raise CXRError(f"{args.data_dir!r} is not a folder.")
    request = command_request(args.model)
    predictor, point = Predictor(request.model_dir), request.point
    note = None if args.json else (lambda key: print(f"  scoring {key} ...", file=sys.stderr, flush=True))
    result = stress_folder(predictor, data_dir, shifts, severities, progress=note, point=point)
    if args.json:
        print_json(result.to_dict())
        return status(len(result.failed))
    print(f"n = {result.n}  model {result.model}  threshold {result.threshold:.3f}")
    print(f"{'condition':<18} {'aug.':<4} {'AUC':>6} {'sens.':>6} {'spec.':>6} {'acc.':>6}")
    for r in stress_rows(result.report):
        print(f"{r.condition:<18} {r.in_augmentation:<4} {r.auc:6.3f} {r.sensitivity:6.3f} {r.specificity:6.3f} "
              f"{r.accuracy:6.3f}")
    for label, w in result.report.worst_cases():
        print(f"worst case, {label}: " + ", ".join(f"{m} {e.value:.3f} ({e.condition})" for m, e in w.shown()))
    if result.failed:
        print(f"{len(result.failed)} file(s) could not be read and were left out.")
    return status(len(result.failed))
