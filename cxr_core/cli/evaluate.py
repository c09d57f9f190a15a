"""`evaluate`: a model on a labelled folder (NORMAL/ and PNEUMONIA/), with 95 % CIs; the scores are saved."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..errors import CXRError
from ..fileio import write_json_atomic
from ..model.operating_point import threshold_wording
from ..model.predict import Predictor
from ..validation.evaluation import evaluate_folder
from ..formatting import ci
from ._common import Progress, add_model_option, print_json, status, command_request


def add_parser(sub: argparse._SubParsersAction) -> None:
    ev = sub.add_parser("evaluate", help="evaluate on a labelled folder (NORMAL/ and PNEUMONIA/)")
    ev.add_argument("data_dir")
    add_model_option(ev)
    ev.add_argument("--json", action="store_true", help="print the summary as one JSON object")
    ev.add_argument("--out", help="also write the summary JSON to this file")
    ev.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples for the 95 %% CIs")
    ev.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.bootstrap < 0:
        raise CXRError(f"--bootstrap {args.bootstrap!r} must be >= 0.")
    if not Path(args.data_dir).is_dir():  # cheap checks before the model loads
        raise CXRError(f"{args.data_dir!r} is not a folder.")
    request = command_request(args.model)
    model_dir, point = request.model_dir, request.point
    predictor = Predictor(model_dir)
    result = evaluate_folder(model_dir, args.data_dir, n_boot=args.bootstrap,
                             progress=None if args.json else Progress, predictor=predictor, point=point)
    summary = result.summary
    if summary["overlap"]["warning"]:
        print(f"Warning: {summary['overlap']['warning']}", file=sys.stderr)
    if args.out:
        write_json_atomic(Path(args.out), summary)  # atomic; an unwritable path is a one-line error
    if args.json:
        print_json(summary)
    else:
        b, t = summary["binary"], summary["three_class"]
        print(f"n = {summary['n']}  model {summary['model']}  threshold {b['threshold']:.3f} "
              f"({threshold_wording(summary['threshold_source'])})")
        print(f"binary: accuracy {b['accuracy']:.3f} {ci(b['accuracy_ci95'])}  AUC {b['auc']:.3f} {ci(b['auc_ci95'])}  "
              f"sensitivity {b['sensitivity']:.3f}  specificity {b['specificity']:.3f}")
        print(f"3-class: accuracy {t['accuracy']:.3f} {ci(t['accuracy_ci95'])}  macro-F1 {t['macro_f1']:.3f}  "
              f"bacterial-vs-viral AUC {t['bacterial_vs_viral_auc']:.3f}")
        if summary.get("failed"):
            print(f"{len(summary['failed'])} file(s) could not be read and were left out.")
        print(f"Per-image scores saved to {result.saved_to}" if result.saved_to else "Per-image scores were not saved.")
    return status(len(summary.get("failed") or []))
