"""`listen`: a DICOM C-STORE SCP (pynetdicom), the way PACS routing rules feed an AI node.

Each received projection radiograph (intended_use.PROJECTION_MODALITIES) is analysed, stored as a case and,
with a forward URL, its SR, Parametric Map and Secondary Capture are sent to that DICOMweb server (STOW-RS).
Other modalities are refused with a logged reason and a failure status; nothing crashes the node. Associations are
served concurrently (one thread each; one prediction at a time). Each association works in one request
(cxr_core.request), resolved at its first instance: the site's operating point then, the sender as the actor; a point
set or reverted applies from the next association. SIGTERM or SIGINT stops it cleanly.
"""

from __future__ import annotations

import logging
import signal
import threading
from dataclasses import dataclass
from typing import Any, Callable

from ..errors import CXRError
from .instance import AnalysedInstance, analyse_instance
from ..safety.intended_use import PROJECTION_MODALITIES
from ..cases.store import CaseStore
from ..model.predict import Predictor
from ..request import Request
from .pacs import PacsServer

log = logging.getLogger("cxr.listener")
SUCCESS = 0x0000
REFUSED = 0xC000  # C-STORE "Failure: cannot understand": outside this node's intended use
FAILED = 0xC001  # the instance could not be analysed or stored (logged)


@dataclass(frozen=True)
class ListenerConfig:
    port: int = 11112
    ae_title: str = "CXRAI"
    address: str = "0.0.0.0"

    def __post_init__(self) -> None:
        if not 1 <= self.port <= 65535:
            raise CXRError(f"--port {self.port!r} is invalid: expected 1 to 65535.")
        if not self.ae_title or len(self.ae_title) > 16 or not self.ae_title.isascii() or "\\" in self.ae_title:
            raise CXRError(f"--aet {self.ae_title!r} is invalid: expected 1 to 16 ASCII characters without a backslash.")


class Listener:
    """The SCP; `start()` returns at once, `stop()` shuts it down; `serve_forever()` blocks until a signal."""

    def __init__(self, config: ListenerConfig, predictor: Predictor, store: CaseStore | None = None,
                 forward: PacsServer | None = None,
                 on_result: Callable[[AnalysedInstance], None] | None = None):
        self.config, self.predictor, self.store, self.forward = config, predictor, store, forward
        self.on_result = on_result
        self._predict_lock = threading.Lock()
        self._requests: dict[int, Request] = {}  # per open association
        self._server: Any = None
        self._stopped = threading.Event()

    def _handle_store(self, event: Any) -> int:
        ds = event.dataset
        ds.file_meta = event.file_meta
        modality = str(ds.get("Modality", "?"))
        if modality not in PROJECTION_MODALITIES:
            log.warning("refused instance %s: modality %s is outside the intended use (%s images only)",
                        ds.get("SOPInstanceUID", "?"), modality, ", ".join(PROJECTION_MODALITIES))
            return REFUSED
        try:
            with self._predict_lock:
                request = self._request(event.assoc)
                result = analyse_instance(ds, self.predictor, request.point, request.store, actor=request.reader)
            if self.forward is not None and result.results:
                self.forward.store(result.results, str(ds.StudyInstanceUID))
        except Exception as exc:  # a bad instance or an unreachable forward target must not stop the node
            log.error("instance %s failed: %s", ds.get("SOPInstanceUID", "?"), exc)
            return FAILED
        log.info("instance %s: %s%s", result.sop_uid, result.outcome, f", case {result.case_id}" if result.case_id else "")
        if self.on_result:
            self.on_result(result)
        return SUCCESS

    def _request(self, assoc: Any) -> Request:
        """The association's request, resolved at its first instance."""
        if id(assoc) not in self._requests:
            self._requests[id(assoc)] = Request.resolve(self.store, str(self.predictor.folder.path),
                                                        f"unsigned (listener, from {assoc.requestor.ae_title})")
        return self._requests[id(assoc)]

    def _forget(self, event: Any) -> None:
        with self._predict_lock:
            self._requests.pop(id(event.assoc), None)

    def start(self) -> "Listener":
        from pynetdicom import AE, AllStoragePresentationContexts, evt  # lazy: heavy

        ae = AE(ae_title=self.config.ae_title)
        ae.supported_contexts = AllStoragePresentationContexts
        ae.maximum_associations = 16
        try:
            self._server = ae.start_server((self.config.address, self.config.port), block=False,
                                           evt_handlers=[(evt.EVT_C_STORE, self._handle_store),
                                                         (evt.EVT_RELEASED, self._forget),
                                                         (evt.EVT_ABORTED, self._forget)])
        except OSError as exc:
            raise CXRError(f"Cannot listen on port {self.config.port}: {exc.strerror}.") from None
        log.info("listening as %s on %s:%d", self.config.ae_title, self.config.address, self.config.port)
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server = None
            log.info("stopped")
        self._stopped.set()

    def serve_forever(self) -> None:
        """Run until SIGTERM or SIGINT, then shut down cleanly."""
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: self._stopped.set())
        self.start()
        self._stopped.wait()
        self.stop()
