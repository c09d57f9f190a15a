"""`cases {list, show, review, export, audit}`: the case store (the worklist) from the command line."""

from __future__ import annotations

import argparse
import sys

from ..cases.store import CaseStore, export_sentence
from ..cases.worklist import triage_order
from ..settings import current
from ..fileio import write_atomic
from ..model.gradcam import overlay
from ._common import prepare_dir, print_json


def add_parser(sub: argparse._SubParsersAction) -> None:
    ca = sub.add_parser("cases", help="the case store: list, review, export, audit")
    csub = ca.add_subparsers(dest="cases_command", required=True)
    cl = csub.add_parser("list", help="every case, in triage order (not assessed, PNEUMONIA by P, the rest)")
    cl.add_argument("--status", help="new, reviewed or disagreed")
    cl.add_argument("--json", action="store_true", help="one JSON object per case")
    cl.set_defaults(func=run_list)
    cs = csub.add_parser("show", help="one case: its result, review and, with --out, its image and Grad-CAM")
    cs.add_argument("case_id", type=int)
    cs.add_argument("--out", help="write case-N.png (the de-identified image) and case-N-gradcam.png here")
    cs.add_argument("--json", action="store_true")
    cs.set_defaults(func=run_show)
    cr = csub.add_parser("review", help="record a reader's verdict on a case")
    cr.add_argument("case_id", type=int)
    cr.add_argument("--decision", required=True, help="agree, disagree, or subtype (pneumonia right, subtype wrong)")
    cr.add_argument("--label", required=True, help="NORMAL, BACTERIAL, VIRAL, OTHER or UNREADABLE")
    cr.add_argument("--reader", required=True)
    cr.add_argument("--comment", default="")
    cr.set_defaults(func=run_review)
    ce = csub.add_parser("export", help="a Kaggle-layout folder with the readers' labels (for evaluate)")
    ce.add_argument("folder")
    ce.add_argument("--reviewed-only", action="store_true", help="only reader-labelled cases (local validation)")
    ce.add_argument("--reader", default="", help="who exports (the audit says 'unsigned' without it)")
    ce.set_defaults(func=run_export)
    cu = csub.add_parser("audit", help="the audit trail")
    cu.add_argument("--json", action="store_true")
    cu.set_defaults(func=run_audit)


def run_list(args: argparse.Namespace) -> int:
    rows = triage_order(CaseStore.open().list(args.status))
    if args.json:
        for row in rows:
            print_json(row)
        return 0
    print(f"{'case':>6}  {'created':<19}  {'label':<12}  {'P(pneu)':>7}  {'threshold':<9}  {'status':<9}  "
          f"{'study date':<10}  model")
    for r in rows:
        label = r["label"] or "not assessed"
        p = "" if r["pneumonia_probability"] is None else f"{r['pneumonia_probability']:.3f}"
        print(f"{r['case_id']:>6}  {r['created'][:19]:<19}  {label:<12}  {p:>7}  {r['threshold_source']:<9}  "
              f"{r['status']:<9}  {r['study_date'] or '':<10}  {r['model_id']}")
    return 0


def run_show(args: argparse.Namespace) -> int:
    store = CaseStore.open()
    case = store.get(args.case_id)
    if args.json:
        print_json(case)
    else:
        label = case["label"] or "not assessed"
        p = "" if case["pneumonia_probability"] is None else f", P(pneumonia) {case['pneumonia_probability']:.3f}"
        review = case["review"]
        print(f"Case {case['case_id']} ({case['created'][:19]} UTC, model {case['model_id']}): {label}"
              f"{' (' + case['subtype'] + ')' if case['subtype'] else ''}{p} at the {case['threshold_source']}'s "
              f"threshold {case['threshold']:.3f}; "
              + (f"reviewed by {review['reader']}: {review['decision']}, {review['label']}." if review else "not reviewed."))
    if args.out:
        import cv2  # lazy: heavy

        folder = prepare_dir(args.out)
        pred = store.prediction(args.case_id)
        written = [folder / f"case-{args.case_id}.png"]
        write_atomic(written[0], store.picture(args.case_id))
        if store.picture(args.case_id, "heatmap") is not None:
            ok, png = cv2.imencode(".png", cv2.cvtColor(overlay(pred.image.pixels, pred.heatmap), cv2.COLOR_RGB2BGR))
            written.append(folder / f"case-{args.case_id}-gradcam.png")
            write_atomic(written[1], png.tobytes())
        print("Wrote " + ", ".join(str(p) for p in written), file=sys.stderr)
    return 0


def run_review(args: argparse.Namespace) -> int:
    CaseStore.open().review(args.case_id, args.decision, args.label, args.reader, args.comment)
    print(f"Case {args.case_id}: review recorded.")
    return 0


def run_export(args: argparse.Namespace) -> int:
    folder = current().layout.export_folder(args.folder)  # a relative path goes under $CXR_HOME/exports, never the working folder
    counts = CaseStore.open().export(folder, args.reviewed_only, actor=args.reader)
    print(f"{export_sentence(counts, folder)}; evaluate with: python -m cxr_core evaluate {folder}")
    return 0


def run_audit(args: argparse.Namespace) -> int:
    for event in CaseStore.open().audit():
        if args.json:
            print_json(event)
        else:
            print(f"{event['time'][:19]}  {event['actor']:<12}  {event['action']:<7}  case {event['case_id']}  "
                  f"{event['details']}")
    return 0
