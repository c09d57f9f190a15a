"""`validate-external`: score a model on a labelled site it never trained on and record the figures in its card
(`external_validation`); with --adopt-threshold, its operating threshold is then chosen on those films."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..errors import CXRError
from ..formatting import ci, with_ci
from ..model.folder import ModelFolder
from ..model.predict import Predictor
from ..settings import current
from ..validation.evaluation import evaluate_folder
from ..validation.external import adopt_external_threshold, external_validation
from ._common import command_request, Progress, print_json


def add_parser(sub: argparse._SubParsersAction) -> None:
    ve = sub.add_parser("validate-external", help="score a model on a labelled external site (NORMAL/ and PNEUMONIA/) "
                                                  "it never trained on; the figures go into its card")
    ve.add_argument("model", help="a model folder or a registered model id")
    ve.add_argument("data_dir", help="the external site's labelled folder")
    ve.add_argument("--site", required=True, help="the site's name as every surface shows it, e.g. 'site A'")
    ve.add_argument("--about", default="", help="what sets the site apart, e.g. \"another period's patients\"")
    ve.add_argument("--adopt-threshold", action="store_true",
                    help="also make the card's operating threshold the highest with sensitivity at the target on "
                         "these films (policy external_sensitivity)")
    ve.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples for the 95 %% CIs")
    ve.add_argument("--json", action="store_true", help="print the card's external_validation block as JSON")
    ve.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.bootstrap < 100:
        raise CXRError(f"--bootstrap {args.bootstrap!r} must be at least 100.")
    if not Path(args.data_dir).is_dir():
        raise CXRError(f"{args.data_dir!r} is not a folder.")
    if not args.site.strip():
        raise CXRError("--site must name the site, e.g. 'site A'.")
    folder = ModelFolder(command_request(args.model, note=None).model_dir)
    predictor = Predictor(folder.path)
    result = evaluate_folder(folder.path, args.data_dir, n_boot=args.bootstrap, predictor=predictor,
                             point=predictor.model_point, progress=None if args.json else Progress)
    block = external_validation(result.summary, result.labels, result.probs, predictor.card, args.site,
                                current().site_policy, about=args.about, n_boot=args.bootstrap,
                                evaluation=result.saved_to.name if result.saved_to else None)
    card = predictor.card.with_fields(external_validation=block)
    if args.adopt_threshold:
        card = adopt_external_threshold(card)
    folder.write_card(card)
    if args.json:
        print_json(card.external_validation, indent=2)
        return 0
    at, t = block["at_target_sensitivity"], block["three_class"]
    print(f"{card.external_label}: n = {block['n']} {block['class_counts']}, none in training.")
    print(f"AUC {with_ci(block['auc'], block['auc_ci95'])}")
    for name, point in ((f"sensitivity >= {at['target_sensitivity']:.2f}", at), ("the card's threshold then",
                                                                                block["at_card_threshold"])):
        print(f"at {name} ({point['threshold']:.3f}): sensitivity {with_ci(point['sensitivity'], point['sensitivity_ci95'])}"
              f", specificity {with_ci(point['specificity'], point['specificity_ci95'])}, accuracy {point['accuracy']:.3f}")
    print(f"3-class accuracy {at['three_class_accuracy']:.3f} at {at['threshold']:.3f}, "
          f"{with_ci(t['accuracy'], t['accuracy_ci95'])} at the card's threshold then; bacterial-vs-viral AUC "
          f"{t['bacterial_vs_viral_auc']:.3f}; the threshold's 95 % CI {ci(at['threshold_ci95'])}")
    print(f"Card updated: {folder.card_file}" + (f"; operating threshold now {card.threshold:.3f} "
                                                 "(external_sensitivity)" if args.adopt_threshold else ""))
    return 0
