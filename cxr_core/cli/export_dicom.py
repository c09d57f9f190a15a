"""`export-dicom`: the DICOM results of one DICOM image in its study (TID 1500 SR, Grad-CAM parametric map,
secondary capture), written to a folder."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..dicom.results import result_objects, write_objects
from ..errors import CXRError
from ..model.predict import Predictor
from ._common import add_model_option, prepare_dir, command_request


def add_parser(sub: argparse._SubParsersAction) -> None:
    ed = sub.add_parser("export-dicom", help="write the DICOM results of one DICOM image in its study: a TID 1500 "
                                             "structured report, a Grad-CAM parametric map and secondary capture")
    ed.add_argument("file", help="a DICOM image (CR / DX)")
    ed.add_argument("--out", required=True, help="folder for SR-<uid>.dcm, PM-<uid>.dcm and SC-<uid>.dcm")
    add_model_option(ed)
    ed.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    source = Path(args.file)
    if not source.is_file():
        raise CXRError(f"{args.file!r} is not a file.")
    out = prepare_dir(args.out)  # cheap checks before the model loads
    request = command_request(args.model)
    predictor, point = Predictor(request.model_dir), request.point
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
