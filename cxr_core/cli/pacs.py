"""`pacs {studies, analyse}`: DICOMweb: list projection radiograph studies, analyse one and send the results back."""

from __future__ import annotations

import argparse
import sys
from datetime import date

from ..dicom.pacs import analyse_study, find_studies
from ..errors import CXRError
from ..model.predict import Predictor
from ._common import add_model_option, pacs_server, print_json, status, command_request


def add_parser(sub: argparse._SubParsersAction) -> None:
    pa = sub.add_parser("pacs", help="DICOMweb: list projection radiograph studies, analyse one and send the results back")
    pa.add_argument("--url", required=True, help="the DICOMweb root, e.g. http://pacs:8042/dicom-web")
    pa.add_argument("--user", help="basic-auth user; the password comes from $CXR_PACS_PASSWORD")
    add_model_option(pa)
    psub = pa.add_subparsers(dest="pacs_command", required=True)
    ps = psub.add_parser("studies", help="projection radiograph studies, newest first (no patient identifiers printed)")
    ps.add_argument("--since", help="only studies on or after this date (YYYY-MM-DD)")
    ps.add_argument("--json", action="store_true", help="one JSON object per study")
    ps.set_defaults(func=run_studies)
    pn = psub.add_parser("analyse", help="retrieve a study, predict each image (stored as cases), print the results")
    pn.add_argument("study_uid")
    pn.add_argument("--send", action="store_true", help="store each image's SR, parametric map and secondary capture in the study")
    pn.add_argument("--json", action="store_true", help="one JSON object per instance (predict's, plus UIDs)")
    pn.add_argument("--reanalyse", action="store_true",
                    help="analyse images this model already analysed; with --send the new results replace the old")
    pn.set_defaults(func=run_analyse)


def run_studies(args: argparse.Namespace) -> int:
    try:
        since = date.fromisoformat(args.since) if args.since else None
    except ValueError:
        raise CXRError(f"--since {args.since!r} is invalid: expected a date as YYYY-MM-DD.") from None
    studies = find_studies(pacs_server(args.url, args.user), since)
    for s in studies:
        if args.json:
            print_json(s)
        else:
            print(f"{s['date'] or '?':<8}  {','.join(s['modalities'] or []):<6}  {s['instances'] or '?':>4}  "
                  f"{s['study_uid']}  {s['description'] or ''}")
    if not args.json:
        print(f"{len(studies)} projection radiograph stud{'y' if len(studies) == 1 else 'ies'}.", file=sys.stderr)
    return 0


def run_analyse(args: argparse.Namespace) -> int:
    server = pacs_server(args.url, args.user)
    if not args.study_uid.strip():  # cheap checks before the model loads
        raise CXRError("A study UID is needed.")
    request = command_request(args.model)
    predictor, store, point = Predictor(request.model_dir), request.store, request.point
    counts = {"analysed": 0, "not assessed": 0, "skipped": 0, "failed": 0, "sent": 0}
    for result in analyse_study(server, args.study_uid, predictor, point, send=args.send, store=store,
                                reanalyse=args.reanalyse):
        pred = result.prediction
        counts[result.status] += 1
        counts["sent"] += len(result.results) if args.send else 0
        if args.json:
            print_json(result.to_json(), flush=True)
        else:
            line = f"{result.sop_uid}: {result.outcome}"
            if result.status == "analysed":
                line += f" P(pneumonia) {pred.pneumonia_probability:.3f}"
            elif result.status == "not assessed":
                line += ": " + "; ".join(pred.not_assessed_reasons)
            print(line)
    print(", ".join(f"{v} {k}" for k, v in counts.items() if k != "sent" or args.send)
          + (" result object(s) stored in the study" if args.send else "") + ".", file=sys.stderr)
    return status(counts["failed"])
