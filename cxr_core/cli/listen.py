"""`listen`: a DICOM C-STORE node that analyses each projection radiograph it receives, keeps the case and
optionally forwards the results (DICOMweb)."""

from __future__ import annotations

import argparse
import logging

from ..dicom.listener import Listener, ListenerConfig
from ..model.predict import Predictor
from ._common import add_model_option, pacs_server, command_request


def add_parser(sub: argparse._SubParsersAction) -> None:
    li = sub.add_parser("listen", help="a DICOM C-STORE node: analyse each projection radiograph received "
                                       "(the modalities the intended-use rule accepts), store the case, optionally "
                                       "forward the SR, parametric map and secondary capture (DICOMweb)")
    li.add_argument("--port", type=int, default=11112)
    li.add_argument("--aet", default="CXRAI", help="this node's AE title")
    li.add_argument("--address", default="0.0.0.0", help="the interface to listen on (127.0.0.1: this machine only)")
    li.add_argument("--forward", metavar="URL", help="DICOMweb root to send the results to (user: --forward-user, "
                                                     "password: $CXR_PACS_PASSWORD)")
    li.add_argument("--forward-user")
    add_model_option(li)
    li.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    config = ListenerConfig(port=args.port, ae_title=args.aet, address=args.address)
    forward = pacs_server(args.forward, args.forward_user) if args.forward else None
    request = command_request(args.model)  # the listener resolves a request for each association it accepts
    predictor, store = Predictor(request.model_dir), request.store
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    logging.getLogger("pynetdicom").setLevel(logging.WARNING)
    Listener(config, predictor, store, forward).serve_forever()
    return 0
