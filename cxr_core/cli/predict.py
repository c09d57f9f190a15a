"""`predict`: NORMAL / PNEUMONIA (and subtype) for images or folders, optionally kept as cases."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..errors import CXRError
from ..inputs.discovery import collect_inputs
from ..model.gradcam import overlay
from ..model.operating_point import OperatingPoint
from ..model.predict import Prediction, Predictor
from ..safety.intended_use import RESEARCH_USE_ONLY
from ._common import Progress, add_model_option, prepare_dir, print_json, status, command_request


def add_parser(sub: argparse._SubParsersAction) -> None:
    pr = sub.add_parser("predict", help="predict NORMAL / PNEUMONIA (and subtype) for images or folders")
    pr.add_argument("inputs", nargs="+", help="image files (JPEG, PNG, DICOM) or folders")
    add_model_option(pr)
    pr.add_argument("--cam-out", help="write a Grad-CAM overlay PNG per input into this folder")
    pr.add_argument("--json", action="store_true", help="one JSON object per input line")
    pr.add_argument("--batch-size", type=int, default=32)
    pr.add_argument("--save", action="store_true", help="also store each decoded input as a case (the worklist)")
    pr.add_argument("--reader", default="", help="with --save: who stores the cases (the audit says 'unsigned' without it)")
    pr.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.batch_size < 1:
        raise CXRError(f"--batch-size {args.batch_size!r} must be a positive integer.")
    found = collect_inputs(args.inputs)
    inputs = found.items
    if not inputs:
        raise CXRError(f"No image files found in the given folders ({found.skipped} other file(s) skipped).")
    cam_dir = prepare_dir(args.cam_out) if args.cam_out else None
    request = command_request(args.model, args.reader)  # the site's operating point, if one was set; --save's cases
    predictor, store, point = Predictor(request.model_dir), request.store, request.point
    if args.save and store is None:
        raise CXRError("--save needs the case database, which is unavailable (see the note above).")
    if point.source == "site":
        print(f"Threshold: {point.threshold:.3f}, the site's operating point.", file=sys.stderr)
    progress = Progress(len(inputs)) if len(inputs) > 5 else None
    failed = refused = 0
    rows = []
    keep = cam_dir is not None or store is not None
    for i, pred in enumerate(predictor.predict_many(inputs, batch_size=args.batch_size, keep_images=keep,
                                                    progress=progress, point=point)):
        failed += pred.error is not None
        refused += pred.error is None and not pred.assessed
        if args.save:
            request.keep(pred, inputs[i][1].read_bytes(), predictor)
        if cam_dir is not None and pred.assessed:  # no heatmap for an input outside the intended use
            write_cam(cam_dir, i, pred)
        pred.image = None
        if args.json:
            print_json(pred.to_json(), flush=True)
        else:
            rows.append(pred)
    if progress:
        progress.close()
    if not args.json:
        _print_table(rows, predictor, point)
    print(f"{len(inputs)} file(s) found: {len(inputs) - failed - refused} analysed, {refused} not assessed "
          f"(outside the intended use), {failed} failed; {found.skipped} non-image file(s) skipped.", file=sys.stderr)
    return status(failed)


def write_cam(cam_dir: Path, index: int, pred: Prediction) -> None:
    """PNG overlay named after the input's stem (no metadata, no identifiers in the file)."""
    import cv2  # lazy: heavy

    picture = overlay(pred.image.pixels, pred.heatmap)
    name = f"{index:04d}_{Path(pred.file).stem[:60]}_cam.png"
    ok = cv2.imwrite(str(cam_dir / name), cv2.cvtColor(picture, cv2.COLOR_RGB2BGR))
    if not ok:
        pred.warnings.append(f"The Grad-CAM overlay could not be written to {cam_dir}.")


def _print_table(rows: list[Prediction], predictor: Predictor, point: OperatingPoint) -> None:
    print(f"Model: {predictor.name}  threshold on P(pneumonia): {point.threshold:.3f}, {point.wording}  "
          f"({RESEARCH_USE_ONLY})")
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
