"""`python -m cxr_core COMMAND`: the command-line interface, one module per command group.

    predict            NORMAL / PNEUMONIA (and subtype) for images or folders      predict.py
    cases              the case store: list, show, review, export, audit           cases.py
    evaluate           a model on a labelled folder, with 95 % CIs                 evaluate.py
    validate-external  a model on a site it never trained on, into its card        validate_external.py
    stress             re-scoring under acquisition shifts (robustness)            stress.py
    models             the registered models; the site's active model (governed)   models.py
    site-model         adapt, activate, show, revert a site-adapted model          site_model.py
    export-dicom       the DICOM results (SR, parametric map, SC) of one image     export_dicom.py
    pacs               DICOMweb: list studies, analyse one, send results back      pacs.py
    site-point         the site's operating point: show, set (governed), revert    site_point.py
    fit-presentation   maintenance: the card's subtype margin and Grad-CAM scale   fit_presentation.py
    listen             a DICOM C-STORE node that analyses what it receives         listen.py
    fit-ood            maintenance: refit a model's input guards                   fit_ood.py

Each module's `add_parser(subparsers)` declares its command and sets `func`; `main` builds the parser from them
and runs the chosen one. What they share (exit statuses, errors, JSON, the reader and confirmation, the model
option, the store and operating point) is in `_common`.

Exit status: 0 success; 1 a confirmation was declined; 2 when any input failed or the arguments are bad. No
traceback is ever shown for a user error: every failure is one line on stderr (or an "error" field with --json).
"""

from __future__ import annotations

import argparse
from typing import Sequence

from ..safety.intended_use import INTENDED_USE, RESEARCH_USE_ONLY

from . import (cases, evaluate, export_dicom, fit_ood, fit_presentation, listen, models, pacs, predict, site_model,
               site_point, stress, validate_external)
from ._common import run_command

# In the order `--help` lists them.
COMMANDS = (predict, cases, evaluate, validate_external, stress, models, site_model, export_dicom, pacs, site_point, fit_presentation,
            listen, fit_ood)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m cxr_core",
                                     description=f"Chest X-ray pneumonia assistant ({RESEARCH_USE_ONLY}). {INTENDED_USE}")
    sub = parser.add_subparsers(dest="command", required=True)
    for command in COMMANDS:
        command.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return run_command(args.func, args)
