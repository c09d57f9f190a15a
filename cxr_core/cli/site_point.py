"""`site-point {show, set, revert}`: the site's operating point: show it, set it from a local evaluation
(governed), or revert to the model's threshold."""

from __future__ import annotations

import argparse
import sys

from ..cases.store import CaseStore
from ..errors import ModelError
from ..model.operating_point import valid_threshold
from ..request import Request
from ..validation.site_point import find_evaluation, revert_site_point, set_site_point
from ..formatting import ci
from ._common import EXIT_NOT_CONFIRMED, add_model_option, confirm, print_json


def add_parser(sub: argparse._SubParsersAction) -> None:
    sp = sub.add_parser("site-point", help="the site's operating point: show it, set it from a local evaluation "
                                           "(governed), or revert to the model's threshold")
    add_model_option(sp)
    ssub = sp.add_subparsers(dest="site_point_command", required=True)
    ss = ssub.add_parser("show", help="the threshold in use, its source and evidence")
    ss.add_argument("--json", action="store_true")
    ss.set_defaults(func=run_show)
    st = ssub.add_parser("set", help="set the site point; refused (exit 2) unless the deployment's rules hold")
    st.add_argument("threshold", type=float)
    st.add_argument("--evaluation", required=True, help="a saved local evaluation: its id, folder or scores.csv")
    st.add_argument("--reader", required=True, help="who sets it (audited)")
    st.add_argument("--yes", action="store_true", help="confirm without asking")
    st.set_defaults(func=run_set)
    sr = ssub.add_parser("revert", help="return every user to the model's own threshold (audited)")
    sr.add_argument("--reader", required=True)
    sr.set_defaults(func=run_revert)


def _context(args: argparse.Namespace) -> Request:
    """The command's request: the case store must open (the site point lives there); the model's card and point."""
    request = Request.resolve(CaseStore.open(), args.model, args.reader if "reader" in args else "")
    if request.entry is None:
        raise ModelError("No model is registered; pass --model DIR.")
    return request


def run_show(args: argparse.Namespace) -> int:
    request = _context(args)
    card, point = request.entry.card, request.point
    if args.json:
        print_json({"model_id": card.model_id, "threshold": point.threshold, "threshold_source": point.source,
                    "set_by": point.set_by, "set_on": point.set_on, "evidence": point.evidence_dict})
        return 0
    print(f"Model {card.model_id}: threshold {point.threshold:.3f}, {point.wording}.")
    if point.source == "site":
        ev = point.evidence_dict
        print(f"Set by {point.set_by} on {(point.set_on or '')[:10]} from evaluation {ev.get('evaluation')} "
              f"(n = {ev.get('n')}: sensitivity {ev.get('sensitivity', float('nan')):.3f} {ci(ev['sensitivity_ci95'])}, "
              f"specificity {ev.get('specificity', float('nan')):.3f} {ci(ev['specificity_ci95'])}).")
    return 0


def run_set(args: argparse.Namespace) -> int:
    request = _context(args)
    store, card = request.store, request.entry.card
    threshold = valid_threshold(args.threshold)
    scores = find_evaluation(card.model_id, args.evaluation)
    question = f"Set {threshold:.3f} as the operating point of {card.model_id} for every user, as {args.reader}? [y/N] "
    if not confirm(question, args.yes, change="Setting the site operating point"):
        print("Not set.", file=sys.stderr)
        return EXIT_NOT_CONFIRMED
    ev = set_site_point(store, card, threshold, scores, request.reader, request.policy)
    if ev.get("overlap_warning"):
        print(f"Warning: {ev['overlap_warning']}", file=sys.stderr)
    print(f"Site operating point set: {threshold:.3f} for {card.model_id} (n = {ev['n']}, sensitivity "
          f"{ev['sensitivity']:.3f} {ci(ev['sensitivity_ci95'])}); audited. Revert with `site-point revert`.")
    return 0


def run_revert(args: argparse.Namespace) -> int:
    request = _context(args)
    card = request.entry.card
    was = revert_site_point(request.store, card, request.reader)
    print(f"The model's own threshold decides again: {card.threshold:.3f}"
          + (f" (the site's was {was:.3f})." if was is not None else " (no site point was set)."))
    return 0
