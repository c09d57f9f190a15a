"""Studies in and results back over DICOMweb (dicomweb-client): QIDO-RS to list projection radiograph studies, WADO-RS to
retrieve a study's instances, STOW-RS to store the SR, Parametric Map and Secondary
Capture back into the same study.

Every failure becomes a CXRError whose message names the server without credentials: unreachable, refused
credentials, unknown study, empty study. Instances that cannot be analysed are reported, not fatal.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Any, Callable, Iterator

from ..errors import CXRError, plain_cause
from .source import result_uid
from .instance import AnalysedInstance, analyse_instance
from ..safety.intended_use import PROJECTION_MODALITIES
from ..cases.store import CaseStore
from ..model.operating_point import OperatingPoint
from ..model.predict import Predictor
from ..readers import UNSIGNED

STUDY_FIELDS = ("StudyInstanceUID", "StudyDate", "StudyTime", "ModalitiesInStudy", "StudyDescription",
                "NumberOfStudyRelatedInstances")


@dataclass(frozen=True)
class PacsServer:
    """A DICOMweb endpoint (e.g. Orthanc's http://host:8042/dicom-web) and optional basic-auth credentials."""

    url: str
    user: str | None = None
    password: str | None = None
    # The retry policy, explicit (dicomweb-client's own default waits ~30 s on a dead URL): a failed connection
    # and HTTP 408, 429, 503 and 504 are tried `attempts` times in all, waiting 2 x backoff_s, 4 x backoff_s, ...
    # between tries; each connection attempt gives up after connect_timeout_s. So a dead URL fails in at most
    # about attempts x connect_timeout_s + the waits: 7 s by default.
    attempts: int = 2
    backoff_s: float = 0.5
    connect_timeout_s: float = 3.0
    read_timeout_s: float = 30.0  # the longest silence while a study streams

    def __post_init__(self) -> None:
        if not self.url.startswith(("http://", "https://")):
            raise CXRError(f"PACS URL {self.url!r} is invalid: expected http://... or https://... (the DICOMweb root).")
        if self.password and not self.user:
            raise CXRError("A PACS password was given without a user name.")
        if not (1 <= self.attempts <= 10 and 0 <= self.backoff_s <= 60 and 0 < self.connect_timeout_s <= 120
                and 0 < self.read_timeout_s <= 3600):
            raise CXRError(f"PACS retry policy (attempts {self.attempts!r}, back-off {self.backoff_s!r} s, timeouts "
                           f"{self.connect_timeout_s!r} / {self.read_timeout_s!r} s) is invalid: expected 1-10 attempts, "
                           "0-60 s back-off, a connect timeout up to 120 s and a read timeout up to 3600 s.")

    def __repr__(self) -> str:  # never print the password
        return f"PacsServer(url={self.url!r}, user={self.user!r})"

    def client(self) -> Any:
        import requests  # lazy: heavy
        from dicomweb_client.api import DICOMwebClient  # lazy: heavy

        session = requests.Session()
        if self.user:
            session.auth = (self.user, self.password or "")
        client = DICOMwebClient(self.url.rstrip("/"), session=session,
                                timeout=(self.connect_timeout_s, self.read_timeout_s))
        client.set_http_retry_params(retry=self.attempts > 1, max_attempts=self.attempts,
                                     wait_exponential_multiplier=int(self.backoff_s * 1000))
        return client

    def store(self, datasets: list[Any], study_uid: str) -> None:
        """STOW-RS `datasets` into study `study_uid`."""
        client = self.client()
        _call(self, f"storing results into study {study_uid}",
              lambda: client.store_instances(datasets, study_instance_uid=study_uid))


def _call(server: PacsServer, what: str, fn: Callable[[], Any]) -> Any:
    """Run one DICOMweb request; turn transport and HTTP failures into one clear sentence."""
    import requests  # lazy: heavy

    try:
        return fn()
    except requests.exceptions.HTTPError as exc:
        code = exc.response.status_code if exc.response is not None else None
        if code in (401, 403):
            raise CXRError(f"The PACS at {server.url} refused the credentials (HTTP {code}) while {what}: "
                           "check the user name and password.") from None
        if code == 404:
            raise CXRError(f"The PACS at {server.url} has nothing at that address (HTTP 404) while {what}: "
                           "check the DICOMweb root (Orthanc: http://host:8042/dicom-web) and the study UID.") from None
        raise CXRError(f"The PACS at {server.url} answered HTTP {code} while {what}.") from None
    except requests.exceptions.RequestException as exc:
        raise CXRError(f"Cannot reach the PACS at {server.url} while {what} ({plain_cause(exc)}): check the URL, "
                       "that the server runs and that this machine may connect to it.") from None


def _value(study: dict[str, Any], keyword: str) -> Any:
    from pydicom.datadict import tag_for_keyword  # lazy: heavy

    element = study.get(f"{tag_for_keyword(keyword):08X}", {})
    values = element.get("Value") or []
    return values if keyword == "ModalitiesInStudy" else (values[0] if values else None)


def find_studies(server: PacsServer, since: date | None = None, limit: int = 200) -> list[dict[str, Any]]:
    """Projection radiograph (CR, DX, DR, RG) studies, newest first: {study_uid, date, time, modalities, description, instances}. No patient
    identifiers (names, IDs, accession numbers) are returned."""
    client = server.client()
    found: dict[str, dict[str, Any]] = {}
    for modality in PROJECTION_MODALITIES:
        filters: dict[str, Any] = {"ModalitiesInStudy": modality}
        if since is not None:
            filters["StudyDate"] = f"{since:%Y%m%d}-"
        studies = _call(server, "searching for studies", lambda: client.search_for_studies(
            search_filters=filters, fields=list(STUDY_FIELDS), limit=limit))
        for s in studies:
            uid = _value(s, "StudyInstanceUID")
            found[uid] = {"study_uid": uid, "date": _value(s, "StudyDate"), "time": _value(s, "StudyTime"),
                          "modalities": _value(s, "ModalitiesInStudy"), "description": _value(s, "StudyDescription"),
                          "instances": _value(s, "NumberOfStudyRelatedInstances")}
    return sorted(found.values(), key=lambda s: (s["date"] or "", s["time"] or ""), reverse=True)


def analyse_study(server: PacsServer, study_uid: str, predictor: Predictor, point: OperatingPoint, send: bool = False,
                  store: CaseStore | None = None, progress: Callable[[int, int], None] | None = None, actor: str = UNSIGNED,
                  reanalyse: bool = False) -> Iterator[AnalysedInstance]:
    """Retrieve a study, analyse each instance at `point` and (with `send`) store its SR, PM and SC back into the
    study. Idempotent: an image whose SR from this model the study already holds is skipped, unless `reanalyse`,
    and then the new results carry the same UIDs and replace the old ones (cxr_core.dicom.results.result_uid).
    Yields one AnalysedInstance per retrieved instance; raises CXRError for an empty or unknown study.
    `actor`: the person the audit names for the cases made."""
    if not study_uid.strip():
        raise CXRError("A study UID is needed.")
    client = server.client()
    instances = _call(server, f"retrieving study {study_uid}", lambda: client.retrieve_study(study_uid))
    if not instances:
        raise CXRError(f"Study {study_uid} has no instances on the PACS at {server.url}.")
    model_id = predictor.card.model_id
    present = {str(ds.get("SOPInstanceUID", "")) for ds in instances}
    for i, ds in enumerate(instances):
        source_uid = str(ds.get("SOPInstanceUID", "?"))
        if not reanalyse and result_uid(source_uid, model_id, "SR") in present:
            result = AnalysedInstance(sop_uid=source_uid, skipped="already analysed by this model; re-analyse to replace")
        else:
            result = analyse_instance(ds, predictor, point, store, actor=actor)
        if send and result.results:
            server.store(result.results, study_uid)
        if progress:
            progress(i + 1, len(instances))
        yield result
