"""`models`: list the registered models; make one the site's active model (governed), or revert; print the
README's shipped-model section. The governed activation and revert are shared with `site-model`."""

from __future__ import annotations

import argparse
import sys

from ..cases.store import CaseStore
from ..errors import CXRError
from ..model.card_markdown import readme_section
from ..model.registry import Registry
from ..settings import PROJECT_ROOT
from ..formatting import ci
from ..request import Request
from ..site.activation import activation_refusals, local_comparison, standing_refusals
from ..site.models import model_for, quiet_store, sync
from ._common import EXIT_FAILED, EXIT_NOT_CONFIRMED, confirm
from ..readers import named


def add_parser(sub: argparse._SubParsersAction) -> None:
    mo = sub.add_parser("models", help="list registered models; make one the site's active model (governed), or revert")
    mo.add_argument("--activate", metavar="MODEL_ID", help="make this model every user's default at this site: "
                                                           "needs --reader and site evidence (--evidence), audited")
    mo.add_argument("--evidence", metavar="DATA_DIR", help="with --activate: a labelled folder of this site's films "
                                                           "(NORMAL/ and PNEUMONIA/) neither model trained on; the "
                                                           "candidate and the site's model are compared on it")
    mo.add_argument("--revert", action="store_true", help="undo the latest activation (audited)")
    mo.add_argument("--reader", default="", help="with --activate / --revert: who does it (audited)")
    mo.add_argument("--yes", action="store_true", help="confirm without asking")
    mo.add_argument("--registry", help="registry folder (default: assets/models or $CXR_REGISTRY)")
    mo.add_argument("--markdown", action="store_true",
                    help="print the README's shipped-model section, generated from the active model's card")
    mo.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    registry = Registry(args.registry) if args.registry else Registry()
    if args.markdown:
        entry = model_for(None, None, registry)  # the registry's own default: the shipped model
        if entry is None:
            raise CXRError(f"No model is registered in {str(registry.root)!r}.")
        shown = entry.path.relative_to(PROJECT_ROOT) if PROJECT_ROOT in entry.path.parents else entry.path
        print(readme_section(entry.card, f"{shown}/"), end="")
        return 0
    if args.activate:
        return activate(args.activate, args.reader, args.yes, args.evidence)
    if args.revert:
        return revert(args.reader)
    store = None if args.registry else quiet_store()
    sync(store)
    try:
        active = model_for(None, store, registry)
    except CXRError as exc:
        print(f"warning: {exc}", file=sys.stderr)
        active = None
    entries = registry.list()
    if not entries:
        print(f"No models in {registry.root}.")
    for e in entries:
        iv = e.card.binary_metrics
        kind = (f"  site-adapted from {e.card.parent_model_id}" if e.card.parent_model_id else
                ("" if e.passed_gate else "  experiment"))
        print(f"{'*' if active and e.model_id == active.model_id else ' '} {e.model_id}  {e.display_name}  "
              f"val AUC {iv.get('auc', float('nan')):.3f}  val acc {iv.get('accuracy', float('nan')):.3f}{kind}")
    return 0


def activate(model_id: str, reader: str, yes: bool, evidence_dir: str | None) -> int:
    """Make `model_id` the site's active model, as `reader`, on evidence from the site's own films: the paired
    comparison is printed, and a refusal names the rule (exit 2) before anything is asked."""
    named(reader, "Changing the site's active model needs --reader NAME (it is audited).")
    request = Request.resolve(CaseStore.open(), model_id, reader)  # the candidate: it need not be the site's model
    entry = request.entry
    evidence = None
    if evidence_dir is not None and not standing_refusals(entry.card):  # no films can make up for those
        evidence = local_comparison(request.store, request.registry, entry, evidence_dir)
        print_comparison(evidence)
    refusals = activation_refusals(entry.card, request.policy, evidence)
    if refusals:  # refused before asking
        print(f"{model_id} cannot be the site's active model: " + " ".join(refusals), file=sys.stderr)
        return EXIT_FAILED
    if not confirm(f"Make {model_id} the active model for every user of this site, as {request.reader}? [y/N] ", yes):
        print("Not changed.", file=sys.stderr)
        return EXIT_NOT_CONFIRMED
    request.activate(model_id, evidence)
    print(f"Active model for the site: {model_id} (by {request.reader}; audited, with its evidence). Revert with "
          "`models --revert`.")
    return 0


def print_comparison(evidence: dict) -> None:
    """The paired comparison on the local films: each model at its own threshold, and the difference."""
    print(f"On {evidence['n']} local films ({evidence['n_positive']} pneumonia, {evidence['n_negative']} normal; "
          f"labels: {evidence.get('label_source') or 'the folder names'}), each model at the point it decides with:")
    print(f"{'':10} {'model':44} {'AUC [95 % CI]':22} {'threshold':9}  {'sensitivity [95 % CI]':26} specificity [95 % CI]")
    for role in ("current", "candidate"):
        m = evidence.get(role)
        if m:
            print(f"{role:10} {m['model_id'][:44]:44} {m['auc']:.3f} {ci(m['auc_ci95']):15} {m['threshold']:9.3f}  "
                  f"{m['sensitivity']:.3f} {ci(m['sensitivity_ci95']):19} {m['specificity']:.3f} {ci(m['specificity_ci95'])}")
    d = evidence.get("difference")
    if d:
        print(f"Paired AUC difference (candidate - current): {d['auc']:+.3f} {ci(d['auc_ci95'])}")


def revert(reader: str) -> int:
    """Undo the site's latest activation, as `reader` (revert_active_model says when a name is missing)."""
    request = Request.resolve(CaseStore.open(), None, reader)
    reverted = request.revert()
    entry = model_for(None, request.store, request.registry)
    print(f"Active model for the site: {entry.model_id if entry else 'none'} (reverted by {reverted.author}; audited).")
    return 0
