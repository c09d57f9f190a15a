"""`site-model {adapt, activate, show, revert}`: adapt a model to this site's own labelled films, and govern its
use. The fine-tuning is train/'s, run as its own process (`python -m train.site`): cxr_core never imports train/."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path


from ..cases.store import CaseStore
from ..errors import CXRError
from ..model.registry import Registry
from ..settings import PROJECT_ROOT
from ..site.models import active_choice, model_for, stored_models
from ..formatting import ci
from ._common import add_model_option, command_request, print_json
from .models import activate, revert
from ..readers import named


def add_parser(sub: argparse._SubParsersAction) -> None:
    sm = sub.add_parser("site-model", help="adapt a model to this site's own labelled films, and govern its use")
    smsub = sm.add_subparsers(dest="site_model_command", required=True)
    sa = smsub.add_parser("adapt", help="fine-tune a model on the site's labelled films, cross-fitted: compare it with its "
                                        "parent on every site film, out-of-fold; keep it in the case database "
                                        "(not active)")
    sa.add_argument("data_dir", nargs="?", help="a labelled folder (NORMAL/ and PNEUMONIA/, as `evaluate` reads)")
    sa.add_argument("--from-reviews", action="store_true", help="use the worklist's reviewed cases instead of a folder")
    sa.add_argument("--reader", required=True, help="who adapts (recorded in the card and the audit)")
    add_model_option(sa, prefix="the parent: ")
    sa.add_argument("--seed", type=int, default=0, help="the split's and the training's seed (default 0)")
    sa.add_argument("--json", action="store_true", help="print the result as one JSON object")
    sa.add_argument("--workers", type=int, default=None, metavar="N",
                    help="train with N worker processes on this machine's loopback (tf.distribute); on real machines "
                         "set TF_CONFIG on each instead")
    sa.add_argument("--work-dir", help="the adaptation's folder (default: one under $CXR_HOME/site-runs named after the parent, "
                                        "the films, the seed and the recipe: rerunning a stopped adaptation resumes there)")
    sa.set_defaults(func=run_adapt)
    sv = smsub.add_parser("activate", help="make a site-adapted (or any) model the site's active one (governed)")
    sv.add_argument("model_id")
    sv.add_argument("--reader", required=True)
    sv.add_argument("--yes", action="store_true", help="confirm without asking")
    sv.set_defaults(func=run_activate)
    sw = smsub.add_parser("show", help="the site's active model and the site-adapted models kept in the database")
    sw.add_argument("--json", action="store_true")
    sw.set_defaults(func=run_show)
    sb = smsub.add_parser("revert", help="return the site to the parent of its active site-adapted model (or to the "
                                         "model active before)")
    sb.add_argument("--reader", required=True)
    sb.set_defaults(func=run_revert)


def run_adapt(args: argparse.Namespace) -> int:
    if bool(args.data_dir) == bool(args.from_reviews):
        raise CXRError("Give either a labelled folder (DATA_DIR) or --from-reviews.")
    named(args.reader, "Site adaptation needs --reader NAME (it is recorded in the model card and the audit).")
    code, result = _adapt_in_process(command_request(args.model, note=None).model_dir, args)
    if result is None:
        return code  # the adaptation said why on stderr
    if args.json:
        print_json(result)
        return 0
    lv, check = result["local_validation"], result["threshold_cross_check"]
    print(f"Site-adapted model {result['model_id']} (parent {result['parent_model_id']}), kept in the case database, "
          f"not active. Out-of-fold evidence on all {lv['n']} site films ({lv['n_positive']} pneumonia, "
          f"{lv['n_negative']} normal), each model at its own threshold:")
    for name in ("parent", "adapted"):
        m = lv[name]
        print(f"  {name:<8} AUC {m['auc']:.3f} {ci(m['auc_ci95'])}  sensitivity {m['sensitivity']:.3f} "
              f"{ci(m['sensitivity_ci95'])}  specificity {m['specificity']:.3f} {ci(m['specificity_ci95'])}  "
              f"threshold {m['threshold']:.3f}")
    print(f"  paired AUC difference (adapted - parent) {lv['difference']['auc']:+.3f} {ci(lv['difference']['auc_ci95'])}")
    print(f"  the threshold rule judged on folds it did not see: sensitivity {check['sensitivity']:.3f} "
          f"{ci(check['sensitivity_ci95'])}, specificity {check['specificity']:.3f} {ci(check['specificity_ci95'])}")
    if result["passed_gate"]:
        print(f"It passes the gate: activate it with `python -m cxr_core site-model activate {result['model_id']} "
              "--reader NAME`.")
    else:
        print("It does not pass the gate: " + " ".join(result["gate_refusals"]))
    return 0


def _adapt_in_process(parent_dir: Path, args: argparse.Namespace) -> tuple[int, dict | None]:
    """Run `python -m train.site`, passing its stderr (the progress bar, or its one-line error) through to this
    command's; (its exit status, its result or None)."""
    with tempfile.TemporaryDirectory(prefix="cxr_site_adapt_") as tmp:
        result_file = Path(tmp) / "result.json"
        command = [sys.executable, "-m", "train.site", str(parent_dir),
                   *(["--from-reviews"] if args.from_reviews else [str(Path(args.data_dir).expanduser().resolve())]),
                   "--reader", args.reader, "--seed", str(args.seed), "--result", str(result_file),
                   *(["--work-dir", str(args.work_dir)] if args.work_dir else []),
                   *(["--workers", str(args.workers)] if args.workers is not None else [])]
        with subprocess.Popen(command, cwd=PROJECT_ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE) as child:
            assert child.stderr is not None
            for chunk in iter(lambda: child.stderr.read1(4096), b""):  # type: ignore[union-attr]
                sys.stderr.write(chunk.decode("utf-8", "replace"))
                sys.stderr.flush()
        if child.returncode != 0 or not result_file.is_file():  # failed, or a cluster's other worker: done
            return child.returncode, None
        return 0, json.loads(result_file.read_text(encoding="utf-8"))


def run_activate(args: argparse.Namespace) -> int:
    return activate(args.model_id, args.reader, args.yes, None)  # a site-adapted model brings its evidence


def run_show(args: argparse.Namespace) -> int:
    store, registry = CaseStore.open(), Registry()
    entry, choice = model_for(None, store, registry), active_choice(store)
    adapted = [m for m in stored_models(store) if m["parent_model_id"]]
    out = {"active_model_id": entry.model_id if entry else None,
           "parent_model_id": entry.card.parent_model_id if entry else None,
           "set_by": choice.author if choice else None, "set_on": choice.created if choice else None,
           "site_adapted_models": [{"model_id": m["model_id"], "parent_model_id": m["parent_model_id"],
                                    "created": m["created"], "stored_by": m["stored_by"],
                                    "passed_gate": bool((m["card"].site_adaptation or {}).get("passed_gate"))}
                                   for m in adapted]}
    if args.json:
        print_json(out)
        return 0
    print(f"Active model: {out['active_model_id']}" + (f", site-adapted from {out['parent_model_id']}"
                                                       if out["parent_model_id"] else "")
          + (f" (set by {out['set_by']} on {out['set_on'][:10]})." if choice else " (the registry's default)."))
    for m in out["site_adapted_models"]:
        print(f"  {m['model_id']}  parent {m['parent_model_id']}  {m['created'][:10]} by {m['stored_by']}  "
              f"{'passes' if m['passed_gate'] else 'fails'} the gate")
    return 0


def run_revert(args: argparse.Namespace) -> int:
    return revert(args.reader)
