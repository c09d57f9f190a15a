"""`python -m cxr_core {predict, cases, evaluate, stress, models, site-model, site-point, export-dicom, pacs, listen,
fit-ood, fit-presentation}`: the command-line interface.

Exit status: 0 success; 2 when any input failed or the arguments are bad. No traceback is ever
shown for a user error: every failure is one line on stderr (or an "error" field with --json).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Sequence

from .errors import CXRError, report_errors


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    return report_errors(lambda: int(args.func(args)))


MODEL_HELP = "a model folder or a registered model id (default: the active model)"


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m cxr_core", description="Chest X-ray pneumonia assistant (research use only).")
    sub = p.add_subparsers(dest="command", required=True)

    pr = sub.add_parser("predict", help="predict NORMAL / PNEUMONIA (and subtype) for images or folders")
    pr.add_argument("inputs", nargs="+", help="image files (JPEG, PNG, DICOM) or folders")
    pr.add_argument("--model", help=MODEL_HELP)
    pr.add_argument("--cam-out", help="write a Grad-CAM overlay PNG per input into this folder")
    pr.add_argument("--json", action="store_true", help="one JSON object per input line")
    pr.add_argument("--batch-size", type=int, default=32)
    pr.add_argument("--save", action="store_true", help="also store each decoded input as a case (the worklist)")
    pr.add_argument("--reader", default="", help="with --save: who stores the cases (the audit says 'unsigned' without it)")
    pr.set_defaults(func=cmd_predict)

    ca = sub.add_parser("cases", help="the case store: list, review, export, audit")
    csub = ca.add_subparsers(dest="cases_command", required=True)
    cl = csub.add_parser("list", help="every case, in triage order (not assessed, PNEUMONIA by P, the rest)")
    cl.add_argument("--status", help="new, reviewed or disagreed")
    cl.add_argument("--json", action="store_true", help="one JSON object per case")
    cl.set_defaults(func=cmd_cases_list)
    cs = csub.add_parser("show", help="one case: its result, review and, with --out, its image and Grad-CAM")
    cs.add_argument("case_id", type=int)
    cs.add_argument("--out", help="write case-N.png (the de-identified image) and case-N-gradcam.png here")
    cs.add_argument("--json", action="store_true")
    cs.set_defaults(func=cmd_cases_show)
    cr = csub.add_parser("review", help="record a reader's verdict on a case")
    cr.add_argument("case_id", type=int)
    cr.add_argument("--decision", required=True, help="agree, disagree, or subtype (pneumonia right, subtype wrong)")
    cr.add_argument("--label", required=True, help="NORMAL, BACTERIAL, VIRAL, OTHER or UNREADABLE")
    cr.add_argument("--reader", required=True)
    cr.add_argument("--comment", default="")
    cr.set_defaults(func=cmd_cases_review)
    ce = csub.add_parser("export", help="a Kaggle-layout folder with the readers' labels (for evaluate)")
    ce.add_argument("folder")
    ce.add_argument("--reviewed-only", action="store_true", help="only reader-labelled cases (local validation)")
    ce.add_argument("--reader", default="", help="who exports (the audit says 'unsigned' without it)")
    ce.set_defaults(func=cmd_cases_export)
    cu = csub.add_parser("audit", help="the audit trail")
    cu.add_argument("--json", action="store_true")
    cu.set_defaults(func=cmd_cases_audit)

    ev = sub.add_parser("evaluate", help="evaluate on a labelled folder (NORMAL/ and PNEUMONIA/)")
    ev.add_argument("data_dir")
    ev.add_argument("--model", help=MODEL_HELP)
    ev.add_argument("--json", action="store_true", help="print the summary as one JSON object")
    ev.add_argument("--out", help="also write the summary JSON to this file")
    ev.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples for the 95 %% CIs")
    ev.set_defaults(func=cmd_evaluate)

    st = sub.add_parser("stress", help="re-score a labelled folder under acquisition shifts (robustness)")
    st.add_argument("data_dir", help="a labelled folder (NORMAL/ and PNEUMONIA/)")
    st.add_argument("--model", help=MODEL_HELP)
    st.add_argument("--shifts", help="comma-separated shift names (default: all)")
    st.add_argument("--severities", default="1,2,3", help="comma-separated severities from 1 (mild) to 3 (severe)")
    st.add_argument("--json", action="store_true", help="print the result as one JSON object")
    st.set_defaults(func=cmd_stress)

    mo = sub.add_parser("models", help="list registered models; make one the site's active model (governed), or revert")
    mo.add_argument("--activate", metavar="MODEL_ID", help="make this model every user's default at this site: "
                                                           "needs --reader, passes the gate, audited")
    mo.add_argument("--revert", action="store_true", help="undo the latest activation (audited)")
    mo.add_argument("--reader", default="", help="with --activate / --revert: who does it (audited)")
    mo.add_argument("--yes", action="store_true", help="confirm without asking")
    mo.add_argument("--registry", help="registry folder (default: assets/models or $CXR_REGISTRY)")
    mo.add_argument("--markdown", action="store_true",
                    help="print the README's shipped-model section, generated from the active model's card")
    mo.set_defaults(func=cmd_models)

    sm = sub.add_parser("site-model", help="adapt a model to this site's own labelled films, and govern its use")
    smsub = sm.add_subparsers(dest="site_model_command", required=True)
    sa = smsub.add_parser("adapt", help="fine-tune a model on the site's labelled films; compare it with its parent "
                                        "on the site's held-out patients; keep it in the case database (not active)")
    sa.add_argument("data_dir", nargs="?", help="a labelled folder (NORMAL/ and PNEUMONIA/, as `evaluate` reads)")
    sa.add_argument("--from-reviews", action="store_true", help="use the worklist's reviewed cases instead of a folder")
    sa.add_argument("--reader", required=True, help="who adapts (recorded in the card and the audit)")
    sa.add_argument("--model", help="the parent: " + MODEL_HELP)
    sa.add_argument("--seed", type=int, default=0, help="the split's and the training's seed (default 0)")
    sa.add_argument("--json", action="store_true", help="print the result as one JSON object")
    sa.add_argument("--work-dir", help="the adaptation's folder (default: a new one under $CXR_HOME/site-runs)")
    sa.set_defaults(func=cmd_site_model_adapt)
    sv = smsub.add_parser("activate", help="make a site-adapted (or any) model the site's active one (governed)")
    sv.add_argument("model_id")
    sv.add_argument("--reader", required=True)
    sv.add_argument("--yes", action="store_true", help="confirm without asking")
    sv.set_defaults(func=cmd_site_model_activate)
    sw = smsub.add_parser("show", help="the site's active model and the site-adapted models kept in the database")
    sw.add_argument("--json", action="store_true")
    sw.set_defaults(func=cmd_site_model_show)
    sb = smsub.add_parser("revert", help="return the site to the parent of its active site-adapted model (or to the "
                                         "model active before)")
    sb.add_argument("--reader", required=True)
    sb.set_defaults(func=cmd_site_model_revert)

    ed = sub.add_parser("export-dicom", help="write the DICOM results of one DICOM image in its study: a TID 1500 "
                                             "structured report, a Grad-CAM parametric map and secondary capture")
    ed.add_argument("file", help="a DICOM image (CR / DX)")
    ed.add_argument("--out", required=True, help="folder for SR-<uid>.dcm, PM-<uid>.dcm and SC-<uid>.dcm")
    ed.add_argument("--model", help=MODEL_HELP)
    ed.set_defaults(func=cmd_export_dicom)

    pa = sub.add_parser("pacs", help="DICOMweb: list projection radiograph studies, analyse one and send the results back")
    pa.add_argument("--url", required=True, help="the DICOMweb root, e.g. http://pacs:8042/dicom-web")
    pa.add_argument("--user", help="basic-auth user; the password comes from $CXR_PACS_PASSWORD")
    pa.add_argument("--model", help=MODEL_HELP)
    psub = pa.add_subparsers(dest="pacs_command", required=True)
    ps = psub.add_parser("studies", help="projection radiograph studies, newest first (no patient identifiers printed)")
    ps.add_argument("--since", help="only studies on or after this date (YYYY-MM-DD)")
    ps.add_argument("--json", action="store_true", help="one JSON object per study")
    ps.set_defaults(func=cmd_pacs_studies)
    pn = psub.add_parser("analyse", help="retrieve a study, predict each image (stored as cases), print the results")
    pn.add_argument("study_uid")
    pn.add_argument("--send", action="store_true", help="store each image's SR, parametric map and secondary capture in the study")
    pn.add_argument("--json", action="store_true", help="one JSON object per instance (predict's, plus UIDs)")
    pn.add_argument("--reanalyse", action="store_true",
                    help="analyse images this model already analysed; with --send the new results replace the old")
    pn.set_defaults(func=cmd_pacs_analyse)

    sp = sub.add_parser("site-point", help="the site's operating point: show it, set it from a local evaluation "
                                           "(governed), or revert to the model's threshold")
    sp.add_argument("--model", help=MODEL_HELP)
    ssub = sp.add_subparsers(dest="site_point_command", required=True)
    ss = ssub.add_parser("show", help="the threshold in use, its source and evidence")
    ss.add_argument("--json", action="store_true")
    ss.set_defaults(func=cmd_site_point_show)
    st_ = ssub.add_parser("set", help="set the site point; refused (exit 2) unless the deployment's rules hold")
    st_.add_argument("threshold", type=float)
    st_.add_argument("--evaluation", required=True, help="a saved local evaluation: its id, folder or scores.csv")
    st_.add_argument("--reader", required=True, help="who sets it (audited)")
    st_.add_argument("--yes", action="store_true", help="confirm without asking")
    st_.set_defaults(func=cmd_site_point_set)
    sr = ssub.add_parser("revert", help="return every user to the model's own threshold (audited)")
    sr.add_argument("--reader", required=True)
    sr.set_defaults(func=cmd_site_point_revert)

    fs = sub.add_parser("fit-presentation", help="maintenance: fit how a model's results are presented, on its "
                                                 "held-out data: the subtype margin and the Grad-CAM scale (its card)")
    fs.add_argument("--model", help=MODEL_HELP)
    fs.add_argument("--data", help="the training data folder (default: the card's)")
    fs.add_argument("--precision", type=float, default=0.85, help="the subtype precision to hold (default 0.85)")
    fs.set_defaults(func=cmd_fit_presentation)

    li = sub.add_parser("listen", help="a DICOM C-STORE node: analyse each projection radiograph received "
                                       "(the modalities the intended-use rule accepts), store the case, optionally "
                                       "forward the SR, parametric map and secondary capture (DICOMweb)")
    li.add_argument("--port", type=int, default=11112)
    li.add_argument("--aet", default="CXRAI", help="this node's AE title")
    li.add_argument("--address", default="0.0.0.0", help="the interface to listen on (127.0.0.1: this machine only)")
    li.add_argument("--forward", metavar="URL", help="DICOMweb root to send the results to (user: --forward-user, "
                                                     "password: $CXR_PACS_PASSWORD)")
    li.add_argument("--forward-user")
    li.add_argument("--model", help=MODEL_HELP)
    li.set_defaults(func=cmd_listen)

    fo = sub.add_parser("fit-ood", help="refit a model's input guards: the out-of-distribution detector, the "
                                        "chest-appearance autoencoder and the population check (writes ood.npz, "
                                        "appearance.keras, appearance.npz and population.npz into the model folder; "
                                        "an interrupted run resumes the autoencoder's training when rerun)")
    fo.add_argument("--model", help=MODEL_HELP)
    fo.add_argument("--data", help="training data folder (default: the one in the model card)")
    fo.add_argument("--adult-data", help="adult reference set for the population check "
                                         "(default: ../shared/data/adult-cxr-reference)")
    fo.set_defaults(func=cmd_fit_ood)
    return p


def resolve_model_dir(model: str | None) -> Path:
    """A folder path, a model id (registered, or kept in the case database), or (None) the site's active model."""
    from .model.registry import Registry
    from .site.models import active_entry, find_entry

    if model and Path(model).is_dir():
        return Path(model)
    registry = Registry()
    store = _quiet_store()
    entry = find_entry(store, registry, model) if model else active_entry(store, registry)
    if entry is None:
        raise CXRError(f"No model is registered in {str(registry.root)!r}; pass --model DIR or train one with `python -m train`.")
    return entry.path


def _quiet_store() -> Any:
    """The case store, or None where it does not open (the registry alone then says which model is active)."""
    from .cases.store import CaseStore

    try:
        return CaseStore.open()
    except CXRError:
        return None


# ----------------------------------------------------------------------------------------------- predict
def cmd_predict(args: argparse.Namespace) -> int:
    from .cases.analyse import keep_case
    from .inputs.discovery import collect_inputs
    from .model.predict import Predictor

    if args.batch_size < 1:
        raise CXRError(f"--batch-size {args.batch_size!r} must be a positive integer.")
    found = collect_inputs(args.inputs)
    inputs = found.items
    if not inputs:
        raise CXRError(f"No image files found in the given folders ({found.skipped} other file(s) skipped).")
    cam_dir = _prepare_dir(args.cam_out) if args.cam_out else None
    predictor = Predictor(resolve_model_dir(args.model))
    store, point = _store_and_point(predictor)  # the site's operating point, if one was set; --save's cases
    if args.save and store is None:
        raise CXRError("--save needs the case database, which is unavailable (see the note above).")
    if point.source == "site":
        print(f"Threshold: {point.threshold:.3f}, the site's operating point.", file=sys.stderr)
    progress = _Progress(len(inputs)) if len(inputs) > 5 else None
    failed = refused = 0
    rows = []
    keep = cam_dir is not None or store is not None
    for i, pred in enumerate(predictor.predict_many(inputs, batch_size=args.batch_size, keep_images=keep,
                                                    progress=progress, point=point)):
        failed += pred.error is not None
        refused += pred.error is None and not pred.assessed
        if args.save:
            keep_case(pred, inputs[i][1].read_bytes(), predictor, store, actor=args.reader)
        if cam_dir is not None and pred.assessed:  # no heatmap for an input outside the intended use
            _write_cam(cam_dir, i, pred)
        pred.image = None
        if args.json:
            print(json.dumps(pred.to_json()), flush=True)
        else:
            rows.append(pred)
    if progress:
        progress.close()
    if not args.json:
        _print_table(rows, predictor, point)
    print(f"{len(inputs)} file(s) found: {len(inputs) - failed - refused} analysed, {refused} not assessed "
          f"(outside the intended use), {failed} failed; {found.skipped} non-image file(s) skipped.", file=sys.stderr)
    return 2 if failed else 0


def _write_cam(cam_dir: Path, index: int, pred: Any) -> None:
    """PNG overlay named after the input's stem (no metadata, no identifiers in the file)."""
    import cv2

    from .model.gradcam import overlay

    picture = overlay(pred.image.pixels, pred.heatmap)
    name = f"{index:04d}_{Path(pred.file).stem[:60]}_cam.png"
    ok = cv2.imwrite(str(cam_dir / name), cv2.cvtColor(picture, cv2.COLOR_RGB2BGR))
    if not ok:
        pred.warnings.append(f"The Grad-CAM overlay could not be written to {cam_dir}.")


def _print_table(rows: list[Any], predictor: Any, point: Any) -> None:
    print(f"Model: {predictor.name}  threshold on P(pneumonia): {point.threshold:.3f}, {point.wording}  "
          "(research use only)")
    width = min(60, max([len(r.file) for r in rows] + [4]))
    print(f"{'file':<{width}}  {'label':<9}  {'P(pneu)':>7}  {'subtype':<9}  note")
    for r in rows:
        name = r.file if len(r.file) <= width else "..." + r.file[-(width - 3):]
        if r.error:
            print(f"{name:<{width}}  {'ERROR':<9}  {'':>7}  {'':<9}  {r.error}")
        elif not r.assessed:
            print(f"{name:<{width}}  {'NOT ASSESSED':<9}  {'':>7}  {'':<9}  {'; '.join(r.not_assessed_reasons + r.warnings)}")
        else:
            print(f"{name:<{width}}  {r.label:<9}  {r.pneumonia_probability:7.3f}  {r.subtype or '-':<9}  {'; '.join(r.warnings)}")


class _Progress:
    """A one-line progress bar on stderr (only when it is a terminal, or always for > 5 files)."""

    def __init__(self, total: int):
        self.total = total

    def __call__(self, done: int) -> None:
        filled = int(30 * done / self.total)
        sys.stderr.write(f"\r[{'#' * filled}{'.' * (30 - filled)}] {done}/{self.total}")
        sys.stderr.flush()

    def close(self) -> None:
        sys.stderr.write("\n")


def _prepare_dir(path: str) -> Path:
    d = Path(path)
    try:
        d.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CXRError(f"Cannot create the folder {path!r}: {exc.strerror}.") from None
    return d


# ----------------------------------------------------------------------------------------------- evaluate
def cmd_evaluate(args: argparse.Namespace) -> int:
    from .validation.evaluation import evaluate_folder
    from .model.operating_point import threshold_wording

    from .model.predict import Predictor

    if args.bootstrap < 0:
        raise CXRError(f"--bootstrap {args.bootstrap!r} must be >= 0.")
    if not Path(args.data_dir).is_dir():  # cheap checks before the model loads
        raise CXRError(f"{args.data_dir!r} is not a folder.")
    model_dir = resolve_model_dir(args.model)
    predictor = Predictor(model_dir)
    _, point = _store_and_point(predictor)
    result = evaluate_folder(model_dir, args.data_dir, n_boot=args.bootstrap,
                             progress=None if args.json else _Progress, predictor=predictor, point=point)
    summary = result.summary
    if summary["overlap"]["warning"]:
        print(f"Warning: {summary['overlap']['warning']}", file=sys.stderr)
    if args.out:
        from .fileio import write_json_atomic

        write_json_atomic(Path(args.out), summary)  # atomic; an unwritable path is a one-line error
    if args.json:
        print(json.dumps(summary))
    else:
        b, t = summary["binary"], summary["three_class"]
        print(f"n = {summary['n']}  model {summary['model']}  threshold {b['threshold']:.3f} "
              f"({threshold_wording(summary['threshold_source'])})")
        print(f"binary: accuracy {b['accuracy']:.3f} {_ci(b['accuracy_ci95'])}  AUC {b['auc']:.3f} {_ci(b['auc_ci95'])}  "
              f"sensitivity {b['sensitivity']:.3f}  specificity {b['specificity']:.3f}")
        print(f"3-class: accuracy {t['accuracy']:.3f} {_ci(t['accuracy_ci95'])}  macro-F1 {t['macro_f1']:.3f}  "
              f"bacterial-vs-viral AUC {t['bacterial_vs_viral_auc']:.3f}")
        if summary.get("failed"):
            print(f"{len(summary['failed'])} file(s) could not be read and were left out.")
        print(f"Per-image scores saved to {result.saved_to}" if result.saved_to else "Per-image scores were not saved.")
    return 2 if summary.get("failed") else 0


def _ci(v: list[float]) -> str:
    return f"[{v[0]:.3f}, {v[1]:.3f}]"


# ----------------------------------------------------------------------------------------------- cases
def cmd_cases_list(args: argparse.Namespace) -> int:
    from .cases.store import CaseStore
    from .cases.worklist import triage_order

    rows = triage_order(CaseStore.open().list(args.status))
    if args.json:
        for row in rows:
            print(json.dumps(row))
        return 0
    print(f"{'case':>6}  {'created':<19}  {'label':<12}  {'P(pneu)':>7}  {'threshold':<9}  {'status':<9}  "
          f"{'study date':<10}  model")
    for r in rows:
        label = r["label"] or "not assessed"
        p = "" if r["pneumonia_probability"] is None else f"{r['pneumonia_probability']:.3f}"
        print(f"{r['case_id']:>6}  {r['created'][:19]:<19}  {label:<12}  {p:>7}  {r['threshold_source']:<9}  "
              f"{r['status']:<9}  {r['study_date'] or '':<10}  {r['model_id']}")
    return 0


def cmd_cases_show(args: argparse.Namespace) -> int:
    from .cases.store import CaseStore
    from .fileio import write_atomic
    from .model.gradcam import overlay

    store = CaseStore.open()
    case = store.get(args.case_id)
    if args.json:
        print(json.dumps(case))
    else:
        label = case["label"] or "not assessed"
        p = "" if case["pneumonia_probability"] is None else f", P(pneumonia) {case['pneumonia_probability']:.3f}"
        review = case["review"]
        print(f"Case {case['case_id']} ({case['created'][:19]} UTC, model {case['model_id']}): {label}"
              f"{' (' + case['subtype'] + ')' if case['subtype'] else ''}{p} at the {case['threshold_source']}'s "
              f"threshold {case['threshold']:.3f}; "
              + (f"reviewed by {review['reader']}: {review['decision']}, {review['label']}." if review else "not reviewed."))
    if args.out:
        import cv2

        folder = _prepare_dir(args.out)
        pred = store.prediction(args.case_id)
        written = [folder / f"case-{args.case_id}.png"]
        write_atomic(written[0], store.picture(args.case_id))
        if store.picture(args.case_id, "heatmap") is not None:
            ok, png = cv2.imencode(".png", cv2.cvtColor(overlay(pred.image.pixels, pred.heatmap), cv2.COLOR_RGB2BGR))
            written.append(folder / f"case-{args.case_id}-gradcam.png")
            write_atomic(written[1], png.tobytes())
        print("Wrote " + ", ".join(str(p) for p in written), file=sys.stderr)
    return 0


def cmd_cases_review(args: argparse.Namespace) -> int:
    from .cases.store import CaseStore

    CaseStore.open().review(args.case_id, args.decision, args.label, args.reader, args.comment)
    print(f"Case {args.case_id}: review recorded.")
    return 0


def cmd_cases_export(args: argparse.Namespace) -> int:
    from .cases.store import CaseStore

    from .paths import export_folder

    folder = export_folder(args.folder)  # a relative path goes under $CXR_HOME/exports, never the working folder
    counts = CaseStore.open().export(folder, args.reviewed_only, actor=args.reader.strip() or "unsigned")
    print(f"Exported {counts['NORMAL']} NORMAL and {counts['PNEUMONIA']} PNEUMONIA image(s) to {folder} "
          f"({counts['left out']} left out); evaluate with: python -m cxr_core evaluate {folder}")
    return 0


def cmd_cases_audit(args: argparse.Namespace) -> int:
    from .cases.store import CaseStore

    for event in CaseStore.open().audit():
        print(json.dumps(event) if args.json else
              f"{event['time'][:19]}  {event['actor']:<12}  {event['action']:<7}  case {event['case_id']}  {event['details']}")
    return 0


# ----------------------------------------------------------------------------------------------- stress
def cmd_stress(args: argparse.Namespace) -> int:
    from .model.predict import Predictor
    from .validation.stress import conditions, stress_folder

    shifts = [s.strip() for s in args.shifts.split(",")] if args.shifts else None
    try:
        severities = [int(s) for s in args.severities.split(",")]
        conditions(shifts, severities)
    except ValueError as exc:
        raise CXRError(f"--shifts/--severities: {exc}.") from None
    data_dir = Path(args.data_dir)
    if not data_dir.is_dir():
        raise CXRError(f"{args.data_dir!r} is not a folder.")
    predictor = Predictor(resolve_model_dir(args.model))
    _, point = _store_and_point(predictor)
    note = None if args.json else (lambda key: print(f"  scoring {key} ...", file=sys.stderr, flush=True))
    result = stress_folder(predictor, data_dir, shifts, severities, progress=note, point=point)
    if args.json:
        print(json.dumps(result))
        return 2 if result["failed"] else 0
    print(f"n = {result['n']}  model {result['model']}  threshold {result['threshold']:.3f}")
    print(f"{'condition':<18} {'aug.':<4} {'AUC':>6} {'sens.':>6} {'spec.':>6} {'acc.':>6}")
    for r in result["conditions"]:
        aug = "" if r["in_training_augmentation"] is None else ("yes" if r["in_training_augmentation"] else "no")
        print(f"{r['condition']:<18} {aug:<4} {r['auc']:6.3f} {r['sensitivity']:6.3f} {r['specificity']:6.3f} {r['accuracy']:6.3f}")
    for label, key in (("moderate", "worst_moderate"), ("severe", "worst_severe")):
        w = result[key]
        print(f"worst up to {label}: " + ", ".join(f"{m} {w[m]['value']:.3f} ({w[m]['condition']})"
                                                   for m in ("auc", "sensitivity", "specificity")))
    if result["failed"]:
        print(f"{len(result['failed'])} file(s) could not be read and were left out.")
    return 2 if result["failed"] else 0


# ----------------------------------------------------------------------------------------------- models
def cmd_models(args: argparse.Namespace) -> int:
    from .model.registry import Registry
    from .settings import PROJECT_ROOT

    registry = Registry(args.registry) if args.registry else Registry()
    if args.markdown:
        from .model.card_markdown import readme_section

        entry = registry.active()
        if entry is None:
            raise CXRError(f"No model is registered in {str(registry.root)!r}.")
        shown = entry.path.relative_to(PROJECT_ROOT) if PROJECT_ROOT in entry.path.parents else entry.path
        print(readme_section(entry.card, f"{shown}/"), end="")
        return 0
    if args.activate:
        return _activate(args.activate, args.reader, args.yes)
    if args.revert:
        return _revert(args.reader)
    from .cases.store import CaseStore
    from .site.models import active_entry, sync

    store = None if args.registry else _quiet_store()
    sync(store)
    try:
        active = active_entry(store, registry)
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


def _confirm(question: str, yes: bool) -> bool:
    """A site-wide change is confirmed: --yes, or y at a terminal."""
    if yes:
        return True
    if not sys.stdin.isatty():
        raise CXRError("A site-wide change needs a confirmation: run it in a terminal, or add --yes.")
    return input(question).strip().lower() in ("y", "yes")


def _activate(model_id: str, reader: str, yes: bool) -> int:
    from .cases.store import CaseStore
    from .model.registry import Registry
    from .settings import current
    from .site.models import activate_model, activation_refusals, find_entry

    if not reader.strip():
        raise CXRError("Changing the site's active model needs --reader NAME (it is audited).")
    store, registry = CaseStore.open(), Registry()
    entry = find_entry(store, registry, model_id)
    refusals = activation_refusals(entry.card, current().site_policy)
    if refusals:  # refused before asking
        raise CXRError(f"{model_id} cannot be the site's active model: " + " ".join(refusals))
    if not _confirm(f"Make {model_id} the active model for every user of this site, as {reader.strip()}? [y/N] ", yes):
        print("Not changed.", file=sys.stderr)
        return 1
    activate_model(store, registry, model_id, reader, current().site_policy)
    print(f"Active model for the site: {model_id} (by {reader.strip()}; audited). Revert with `models --revert`.")
    return 0


def _revert(reader: str) -> int:
    from .cases.store import CaseStore
    from .model.registry import Registry
    from .site.models import active_entry, revert_active_model

    store, registry = CaseStore.open(), Registry()
    revert_active_model(store, registry, reader)
    entry = active_entry(store, registry)
    print(f"Active model for the site: {entry.model_id if entry else 'none'} (reverted by {reader.strip()}; audited).")
    return 0


# ----------------------------------------------------------------------------------------------- site-model
def cmd_site_model_adapt(args: argparse.Namespace) -> int:
    from train.site import adapt_from_cli  # training code: the CLI sits above train/ (README, "Layout")

    if bool(args.data_dir) == bool(args.from_reviews):
        raise CXRError("Give either a labelled folder (DATA_DIR) or --from-reviews.")
    if not args.reader.strip():
        raise CXRError("Site adaptation needs --reader NAME (it is recorded in the model card and the audit).")
    result = adapt_from_cli(resolve_model_dir(args.model), args.data_dir, args.from_reviews, args.reader,
                            args.seed, quiet=args.json, work_dir=Path(args.work_dir) if args.work_dir else None)
    if args.json:
        print(json.dumps(result))
        return 0
    lv = result["local_validation"]
    print(f"Site-adapted model {result['model_id']} (parent {result['parent_model_id']}), kept in the case database, "
          f"not active. Local validation, {lv['n']} films ({lv['n_positive']} pneumonia, {lv['n_negative']} normal), "
          "each model at its own threshold:")
    for name in ("parent", "adapted"):
        m = lv[name]
        print(f"  {name:<8} AUC {m['auc']:.3f} {_ci(m['auc_ci95'])}  sensitivity {m['sensitivity']:.3f} "
              f"{_ci(m['sensitivity_ci95'])}  specificity {m['specificity']:.3f} {_ci(m['specificity_ci95'])}  "
              f"threshold {m['threshold']:.3f}")
    if result["passed_gate"]:
        print(f"It passes the gate: activate it with `python -m cxr_core site-model activate {result['model_id']} "
              "--reader NAME`.")
    else:
        print("It does not pass the gate: " + " ".join(result["gate_refusals"]))
    return 0


def cmd_site_model_activate(args: argparse.Namespace) -> int:
    return _activate(args.model_id, args.reader, args.yes)


def cmd_site_model_show(args: argparse.Namespace) -> int:
    from .cases.store import CaseStore
    from .model.registry import Registry
    from .site.models import active_choice, active_entry, stored_models

    store, registry = CaseStore.open(), Registry()
    entry, choice = active_entry(store, registry), active_choice(store)
    adapted = [m for m in stored_models(store) if m["parent_model_id"]]
    out = {"active_model_id": entry.model_id if entry else None,
           "parent_model_id": entry.card.parent_model_id if entry else None,
           "set_by": choice.author if choice else None, "set_on": choice.created if choice else None,
           "site_adapted_models": [{"model_id": m["model_id"], "parent_model_id": m["parent_model_id"],
                                    "created": m["created"], "stored_by": m["stored_by"],
                                    "passed_gate": bool((m["card"].site_adaptation or {}).get("passed_gate"))}
                                   for m in adapted]}
    if args.json:
        print(json.dumps(out))
        return 0
    print(f"Active model: {out['active_model_id']}" + (f", site-adapted from {out['parent_model_id']}"
                                                       if out["parent_model_id"] else "")
          + (f" (set by {out['set_by']} on {out['set_on'][:10]})." if choice else " (the registry's default)."))
    for m in out["site_adapted_models"]:
        print(f"  {m['model_id']}  parent {m['parent_model_id']}  {m['created'][:10]} by {m['stored_by']}  "
              f"{'passes' if m['passed_gate'] else 'fails'} the gate")
    return 0


def cmd_site_model_revert(args: argparse.Namespace) -> int:
    return _revert(args.reader)


def cmd_fit_ood(args: argparse.Namespace) -> int:
    from .fitting.guards import refit_model_guards

    model_dir = resolve_model_dir(args.model)
    report = refit_model_guards(model_dir, args.data, args.adult_data, log=lambda line: print(line, file=sys.stderr,
                                                                                              flush=True))
    print(json.dumps(report, indent=2))
    return 0


# ----------------------------------------------------------------------------------------------- DICOM and PACS
def _pacs_server(url: str, user: str | None) -> Any:
    from .dicom.pacs import PacsServer
    from .settings import current

    return PacsServer(url, user, current().pacs_password if user else None)


def _store_and_point(predictor: Any) -> tuple[Any, Any]:
    """The case store (or None, said on stderr, where it does not open) and the operating point that decides
    for this command: the site's governed point, if one is set, else the model's threshold."""
    from .cases.store import CaseStore
    from .model.operating_point import OperatingPoint, resolve

    try:
        store = CaseStore.open()
    except CXRError as exc:
        print(f"Note: {exc} Results are not kept as cases; the model's own threshold decides.", file=sys.stderr)
        return None, OperatingPoint.of_model(predictor.card)
    return store, resolve(predictor.card, store)


def cmd_export_dicom(args: argparse.Namespace) -> int:
    from .dicom.results import result_objects, write_objects
    from .model.predict import Predictor

    source = Path(args.file)
    if not source.is_file():
        raise CXRError(f"{args.file!r} is not a file.")
    out = _prepare_dir(args.out)  # cheap checks before the model loads
    predictor = Predictor(resolve_model_dir(args.model))
    _, point = _store_and_point(predictor)
    data = source.read_bytes()
    pred = predictor.predict(data, name=source.name, point=point)
    if pred.error:
        raise CXRError(f"{source.name}: {pred.error}")
    if pred.image.format != "DICOM":
        raise CXRError(f"{source.name} is not DICOM ({pred.image.format}): DICOM results need the source's study.")
    objects = result_objects(data, pred, predictor.card)
    for path in write_objects(objects, out):
        print(path)
    print(f"{'assessed: ' + pred.label if pred.assessed else 'not assessed'}; {len(objects)} object(s) written.",
          file=sys.stderr)
    return 0


def cmd_pacs_studies(args: argparse.Namespace) -> int:
    from datetime import date

    from .dicom.pacs import find_studies

    try:
        since = date.fromisoformat(args.since) if args.since else None
    except ValueError:
        raise CXRError(f"--since {args.since!r} is invalid: expected a date as YYYY-MM-DD.") from None
    studies = find_studies(_pacs_server(args.url, args.user), since)
    for s in studies:
        print(json.dumps(s) if args.json else
              f"{s['date'] or '?':<8}  {','.join(s['modalities'] or []):<6}  {s['instances'] or '?':>4}  {s['study_uid']}  "
              f"{s['description'] or ''}")
    if not args.json:
        print(f"{len(studies)} projection radiograph stud{'y' if len(studies) == 1 else 'ies'}.", file=sys.stderr)
    return 0


def cmd_pacs_analyse(args: argparse.Namespace) -> int:
    from .dicom.pacs import analyse_study
    from .model.predict import Predictor

    server = _pacs_server(args.url, args.user)
    if not args.study_uid.strip():  # cheap checks before the model loads
        raise CXRError("A study UID is needed.")
    predictor = Predictor(resolve_model_dir(args.model))
    store, point = _store_and_point(predictor)
    counts = {"analysed": 0, "not assessed": 0, "skipped": 0, "failed": 0, "sent": 0}
    for result in analyse_study(server, args.study_uid, predictor, point, send=args.send, store=store,
                                reanalyse=args.reanalyse):
        pred = result.prediction
        counts[result.status] += 1
        counts["sent"] += len(result.results) if args.send else 0
        if args.json:
            print(json.dumps(result.to_json()), flush=True)
        else:
            line = f"{result.sop_uid}: {result.outcome}"
            if result.status == "analysed":
                line += f" P(pneumonia) {pred.pneumonia_probability:.3f}"
            elif result.status == "not assessed":
                line += ": " + "; ".join(pred.not_assessed_reasons)
            print(line)
    print(", ".join(f"{v} {k}" for k, v in counts.items() if k != "sent" or args.send)
          + (" result object(s) stored in the study" if args.send else "") + ".", file=sys.stderr)
    return 2 if counts["failed"] else 0


def _site_point_context(args: argparse.Namespace) -> tuple[Any, Any]:
    """The case store (it must open: the site point lives there) and the model's card."""
    from .cases.store import CaseStore
    from .model.folder import ModelFolder

    card = ModelFolder(resolve_model_dir(args.model)).card()
    return CaseStore.open(), card


def cmd_site_point_show(args: argparse.Namespace) -> int:
    from .model.operating_point import resolve

    store, card = _site_point_context(args)
    point = resolve(card, store)
    if args.json:
        print(json.dumps({"model_id": card.model_id, "threshold": point.threshold,
                          "threshold_source": point.source, "set_by": point.set_by, "set_on": point.set_on,
                          "evidence": point.evidence_dict}))
        return 0
    print(f"Model {card.model_id}: threshold {point.threshold:.3f}, {point.wording}.")
    if point.source == "site":
        ev = point.evidence_dict
        print(f"Set by {point.set_by} on {(point.set_on or '')[:10]} from evaluation {ev.get('evaluation')} "
              f"(n = {ev.get('n')}: sensitivity {ev.get('sensitivity', float('nan')):.3f} {_ci(ev['sensitivity_ci95'])}, "
              f"specificity {ev.get('specificity', float('nan')):.3f} {_ci(ev['specificity_ci95'])}).")
    return 0


def cmd_site_point_set(args: argparse.Namespace) -> int:
    from .model.operating_point import valid_threshold
    from .settings import current
    from .validation.site_point import find_evaluation, set_site_point

    store, card = _site_point_context(args)
    threshold = valid_threshold(args.threshold)
    scores = find_evaluation(card.model_id, args.evaluation)
    if not args.yes:
        question = (f"Set {threshold:.3f} as the operating point of {card.model_id} for every user, as "
                    f"{args.reader}? [y/N] ")
        if not sys.stdin.isatty():
            raise CXRError("Setting the site operating point needs a confirmation: run it in a terminal, or add --yes.")
        if input(question).strip().lower() not in ("y", "yes"):
            print("Not set.", file=sys.stderr)
            return 1
    ev = set_site_point(store, card, threshold, scores, args.reader, current().site_policy)
    if ev.get("overlap_warning"):
        print(f"Warning: {ev['overlap_warning']}", file=sys.stderr)
    print(f"Site operating point set: {threshold:.3f} for {card.model_id} (n = {ev['n']}, sensitivity "
          f"{ev['sensitivity']:.3f} {_ci(ev['sensitivity_ci95'])}); audited. Revert with `site-point revert`.")
    return 0


def cmd_site_point_revert(args: argparse.Namespace) -> int:
    from .validation.site_point import revert_site_point

    store, card = _site_point_context(args)
    was = revert_site_point(store, card, args.reader)
    print(f"The model's own threshold decides again: {card.threshold:.3f}"
          + (f" (the site's was {was:.3f})." if was is not None else " (no site point was set)."))
    return 0


def cmd_fit_presentation(args: argparse.Namespace) -> int:
    from .fitting.presentation import fit_presentation

    if not 0.5 <= args.precision < 1.0:
        raise CXRError(f"--precision {args.precision!r} is invalid: expected a number from 0.5 to below 1.")
    fields = fit_presentation(resolve_model_dir(args.model), data_dir=Path(args.data) if args.data else None,
                              precision=args.precision)
    print(json.dumps(fields, indent=2))
    return 0


def cmd_listen(args: argparse.Namespace) -> int:
    import logging

    from .dicom.listener import Listener, ListenerConfig
    from .model.predict import Predictor

    config = ListenerConfig(port=args.port, ae_title=args.aet, address=args.address)
    forward = _pacs_server(args.forward, args.forward_user) if args.forward else None
    predictor = Predictor(resolve_model_dir(args.model))
    store, _ = _store_and_point(predictor)  # the listener resolves the point for each instance it receives
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    logging.getLogger("pynetdicom").setLevel(logging.WARNING)
    Listener(config, predictor, store, forward).serve_forever()
    return 0
