"""`fit-presentation` (maintenance): fit how a model's results are presented, on its held-out data: the subtype
margin and the Grad-CAM scale, written into its card."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..errors import CXRError
from ..fitting.presentation import fit_presentation
from ._common import command_request, add_model_option, print_json


def add_parser(sub: argparse._SubParsersAction) -> None:
    fs = sub.add_parser("fit-presentation", help="maintenance: fit how a model's results are presented, on its "
                                                 "held-out data: the subtype margin and the Grad-CAM scale (its card)")
    add_model_option(fs)
    fs.add_argument("--data", help="the training data folder (default: the card's)")
    fs.add_argument("--precision", type=float, default=0.85, help="the subtype precision to hold (default 0.85)")
    fs.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if not 0.5 <= args.precision < 1.0:
        raise CXRError(f"--precision {args.precision!r} is invalid: expected a number from 0.5 to below 1.")
    fields = fit_presentation(command_request(args.model, note=None).model_dir, data_dir=Path(args.data) if args.data else None,
                              precision=args.precision)
    print_json(fields, indent=2)
    return 0
