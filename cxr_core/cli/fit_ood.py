"""`fit-ood` (maintenance): refit a model's input guards (out-of-distribution detector, chest-appearance
autoencoder, population check) into its folder; an interrupted run resumes when rerun."""

from __future__ import annotations

import argparse
import sys

from ..fitting.guards import refit_model_guards
from ._common import command_request, add_model_option, print_json


def add_parser(sub: argparse._SubParsersAction) -> None:
    fo = sub.add_parser("fit-ood", help="refit a model's input guards: the out-of-distribution detector, the "
                                        "chest-appearance autoencoder and the population check (writes ood.npz, "
                                        "appearance.keras, appearance.npz and population.npz into the model folder; "
                                        "an interrupted run resumes the autoencoder's training when rerun)")
    add_model_option(fo)
    fo.add_argument("--data", help="training data folder (default: the one in the model card)")
    fo.add_argument("--adult-data", help="adult reference set for the population check "
                                         "(default: ../shared/data/adult-cxr-reference)")
    fo.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    model_dir = command_request(args.model, note=None).model_dir
    report = refit_model_guards(model_dir, args.data, args.adult_data,
                                log=lambda line: print(line, file=sys.stderr, flush=True))
    print_json(report, indent=2)
    return 0
