"""DICOM results out (highdicom SR + Secondary Capture), and the round trip against a real PACS: Debian's
Orthanc with its DICOMweb plugin, started here on loopback ports in a temp folder and stopped by its pid."""

from __future__ import annotations

import base64
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

import cv2
import pydicom
import pytest

from . import inputs
from .conftest import PROJECT_ROOT
from .harness import c_store, free_port, run_cli

ORTHANC = shutil.which("Orthanc")
DICOMWEB_PLUGIN = "/usr/share/orthanc/plugins/libOrthancDicomWeb.so"
USER, PASSWORD = "cxr", "s3cret-pw"


def _training_like_dicom(tiny_data, modality="DX", **kw) -> bytes:
    """A DICOM of a training-like image (the tiny model assesses it), with identifying tags."""
    img = cv2.imread(str(sorted((tiny_data / "PNEUMONIA").iterdir())[0]), cv2.IMREAD_GRAYSCALE)
    return inputs.dicom(array=img.astype("uint16") * 16, modality=modality, **kw)


def _cli(args, env):
    return run_cli(args, env)


@pytest.fixture
def env(tiny_registry):
    return {**os.environ, "CXR_REGISTRY": str(tiny_registry.root), "TF_CPP_MIN_LOG_LEVEL": "3",
            "CXR_PACS_PASSWORD": PASSWORD}


# ---------------------------------------------------------------------------------------------- results out
def test_export_dicom_writes_an_sr_and_a_secondary_capture_in_the_source_study(tiny_data, env, tmp_path):
    import highdicom as hd

    src = tmp_path / "source.dcm"
    src.write_bytes(_training_like_dicom(tiny_data))
    out = tmp_path / "out"
    res = _cli(["export-dicom", str(src), "--out", str(out)], env)
    assert res.returncode == 0, res.stderr
    source = pydicom.dcmread(src)
    written = {p.name[:2]: p for p in out.iterdir()}
    assert set(written) == {"SR", "SC"}
    sr = hd.sr.srread(written["SR"])  # highdicom's own parsing
    sc = hd.imread(str(written["SC"]))
    for obj in (sr, sc):
        assert obj.StudyInstanceUID == source.StudyInstanceUID and obj.PatientID == source.PatientID
        assert obj.PatientName == source.PatientName
        assert obj.SeriesInstanceUID != source.SeriesInstanceUID and obj.SOPInstanceUID != source.SOPInstanceUID
    items = {i.name.meaning: i for i in sr.content[0].ContentSequence}
    finding = items["Pneumonia"]
    assert finding.name.value == "233604007" and finding.name.scheme_designator == "SCT"
    prediction = json.loads(_cli(["predict", str(src), "--json"], env).stdout)
    assert finding.value.meaning == ("Present" if prediction["label"] == "PNEUMONIA" else "Absent")
    for c in ("NORMAL", "BACTERIAL", "VIRAL"):
        assert items[f"Probability of class {c}"].value == pytest.approx(prediction["class_probabilities"][c], abs=1e-6)
    if prediction["subtype"] == "UNCERTAIN":  # a margin below the model's: said, not guessed
        assert items["Likelier pneumonia subtype"].value.startswith("uncertain")
    elif prediction["subtype"]:
        assert items["Likelier pneumonia subtype"].value == prediction["subtype"]
    assert items["Probability of pneumonia"].value == pytest.approx(prediction["pneumonia_probability"], abs=1e-6)
    assert items["Operating threshold on the probability of pneumonia"].value == pytest.approx(prediction["threshold"])
    assert items["Source of the operating threshold"].value == "the model's threshold"
    assert "research" in items["Intended use"].value.lower()
    assert items["Model identifier"].value == _active_id(env)
    ref = items["Source of Measurement"].ReferencedSOPSequence[0]
    assert (ref.ReferencedSOPClassUID, ref.ReferencedSOPInstanceUID) == (source.SOPClassUID, source.SOPInstanceUID)
    assert sc.BurnedInAnnotation == "YES" and sc.pixel_array.ndim == 3 and sc.pixel_array.shape[1] >= 768


@pytest.mark.skipif(not (shutil.which("dciodvfy") and shutil.which("dsrdump")),
                    reason="the DICOM validators are not installed (Debian: apt-get install dicom3tools dcmtk)")
def test_the_sr_and_sc_pass_the_standards_own_validators(tiny_data, env, tmp_path):
    """dciodvfy (dicom3tools) finds no error in either object; dsrdump (dcmtk) reads the SR. The private coding
    scheme is declared in the SR's Coding Scheme Identification Sequence."""
    src = tmp_path / "source.dcm"
    src.write_bytes(_training_like_dicom(tiny_data))
    res = _cli(["export-dicom", str(src), "--out", str(tmp_path / "out")], env)
    assert res.returncode == 0, res.stderr
    written = sorted((tmp_path / "out").iterdir())
    assert [p.name[:2] for p in written] == ["SC", "SR"]
    for path in written:
        report = subprocess.run(["dciodvfy", str(path)], capture_output=True, text=True, timeout=60)
        errors = [line for line in (report.stdout + report.stderr).splitlines() if line.startswith("Error")]
        assert errors == [], f"{path.name}: {errors}"
    sr = written[1]
    dumped = subprocess.run(["dsrdump", str(sr)], capture_output=True, text=True, timeout=60)
    assert dumped.returncode == 0 and "Pneumonia" in dumped.stdout, dumped.stderr
    scheme = pydicom.dcmread(sr).CodingSchemeIdentificationSequence
    assert [s.CodingSchemeDesignator for s in scheme] == ["99CXRAI"]


def _active_id(env) -> str:
    from cxr_core.model.registry import Registry

    return Registry(env["CXR_REGISTRY"]).active_id()


def test_a_ct_image_gets_a_report_that_says_not_assessed_and_no_heatmap(tiny_data, env, tmp_path):
    import highdicom as hd

    src = tmp_path / "ct.dcm"
    src.write_bytes(_training_like_dicom(tiny_data, modality="CT", sop_class="1.2.840.10008.5.1.4.1.1.2"))
    res = _cli(["export-dicom", str(src), "--out", str(tmp_path / "out")], env)
    assert res.returncode == 0, res.stderr
    [only] = list((tmp_path / "out").iterdir())
    items = {i.name.meaning: i for i in hd.sr.srread(only).content[0].ContentSequence}
    assert items["Pneumonia"].value.meaning == "Undetermined" and "CT" in items["Reason not assessed"].value
    assert "Probability of pneumonia" not in items


@pytest.mark.parametrize("name, data, message", [("photo.jpg", inputs.jpeg_gray(), "not DICOM"),
                                                 ("broken.dcm", b"DICM" * 10, "broken.dcm")])
def test_export_dicom_refuses_what_it_cannot_place_in_a_study(env, tmp_path, name, data, message):
    (tmp_path / name).write_bytes(data)
    res = _cli(["export-dicom", str(tmp_path / name), "--out", str(tmp_path / "out")], env)
    assert res.returncode == 2 and message in res.stderr and "Traceback" not in res.stderr


# ---------------------------------------------------------------------------------------------- the real PACS
class Orthanc:
    def __init__(self, folder: str, auth: bool):
        self.http, self.dicom = free_port(), free_port()
        config = {"Name": "cxr-test", "StorageDirectory": f"{folder}/db", "IndexDirectory": f"{folder}/db",
                  "HttpPort": self.http, "DicomPort": self.dicom, "DicomAet": "ORTHANC", "RemoteAccessAllowed": False,
                  "AuthenticationEnabled": auth, "RegisteredUsers": {USER: PASSWORD} if auth else {},
                  "Plugins": [DICOMWEB_PLUGIN], "DicomWeb": {"Enable": True, "Root": "/dicom-web/"},
                  "HttpBindAddress": "127.0.0.1", "DicomServerEnabled": False,
                  "OverwriteInstances": True}  # a re-analysis replaces its results (same UIDs), as README says
        path = f"{folder}/orthanc.json"
        with open(path, "w") as f:
            json.dump(config, f)
        self.log = open(f"{folder}/orthanc.log", "wb")
        self.proc = subprocess.Popen([ORTHANC, path], stdout=self.log, stderr=subprocess.STDOUT)
        self.url = f"http://127.0.0.1:{self.http}"
        self.dicomweb = f"{self.url}/dicom-web"
        deadline = time.time() + 60
        while time.time() < deadline:
            try:
                self.get("/system")
                return
            except OSError:
                if self.proc.poll() is not None:
                    break
                time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"Orthanc did not start; see {folder}/orthanc.log")

    def _request(self, path: str, data: bytes | None = None, method: str | None = None):
        req = urllib.request.Request(self.url + path, data=data, method=method)
        req.add_header("Authorization", "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode())
        with urllib.request.urlopen(req, timeout=20) as r:
            return json.loads(r.read() or b"null")

    def get(self, path: str):
        return self._request(path)

    def upload(self, data: bytes) -> dict:
        return self._request("/instances", data=data, method="POST")

    def study_series(self, study_uid: str) -> list[dict]:
        [study] = self._request("/tools/lookup", data=study_uid.encode(), method="POST")
        return [self.get(f"/series/{s}") for s in self.get(f"/studies/{study['ID']}")["Series"]]

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()


@pytest.fixture
def orthanc():
    if not ORTHANC or not os.path.exists(DICOMWEB_PLUGIN):
        pytest.skip("Orthanc with its DICOMweb plugin is not installed (Debian: apt-get install orthanc "
                    "orthanc-dicomweb); .ci/run installs them")
    folder = tempfile.mkdtemp(prefix="cxr-orthanc-")
    server = Orthanc(folder, auth=True)
    yield server
    server.stop()
    shutil.rmtree(folder, ignore_errors=True)


def _modalities(orthanc, study_uid) -> list[str]:
    return sorted(s["MainDicomTags"].get("Modality", "") for s in orthanc.study_series(study_uid))


def test_pacs_studies_then_analyse_and_send_puts_the_results_in_the_same_study(orthanc, tiny_data, env):
    data = _training_like_dicom(tiny_data)
    source = pydicom.dcmread(io.BytesIO(data))
    orthanc.upload(data)
    orthanc.upload(_training_like_dicom(tiny_data, modality="CT", sop_class="1.2.840.10008.5.1.4.1.1.2"))
    pacs = ["pacs", "--url", orthanc.dicomweb, "--user", USER]
    listed = _cli(pacs + ["studies", "--json"], env)
    assert listed.returncode == 0, listed.stderr
    studies = [json.loads(line) for line in listed.stdout.splitlines()]
    assert [s["study_uid"] for s in studies] == [source.StudyInstanceUID]  # the CT study is not a radiograph
    assert "Doe" not in listed.stdout and "ID-12345" not in listed.stdout and PASSWORD not in listed.stdout + listed.stderr
    assert _cli(pacs + ["studies", "--since", "2030-01-01", "--json"], env).stdout == ""

    analysed = _cli(pacs + ["analyse", source.StudyInstanceUID, "--send", "--json"], env)
    assert analysed.returncode == 0, analysed.stderr
    [line] = [json.loads(x) for x in analysed.stdout.splitlines()]
    assert line["assessed"] and line["label"] in ("NORMAL", "PNEUMONIA") and line["case_id"] is not None
    assert len(line["results"]) == 2
    assert _modalities(orthanc, source.StudyInstanceUID) == ["DX", "OT", "SR"]  # one SR, one SC, same study
    for series in orthanc.study_series(source.StudyInstanceUID):
        instance = orthanc.get(f"/instances/{series['Instances'][0]}/simplified-tags")
        assert instance["PatientID"] == source.PatientID and instance["StudyInstanceUID"] == source.StudyInstanceUID
    # Idempotent: a second "analyse --send" skips the analysed image and adds nothing; our own results are skipped
    again = _cli(pacs + ["analyse", source.StudyInstanceUID, "--send", "--json"], env)
    skipped = sorted(str(json.loads(x)["skipped"]) for x in again.stdout.splitlines())
    assert skipped == ["already analysed by this model; re-analyse to replace", "this assistant's own result",
                       "this assistant's own result"]
    assert _modalities(orthanc, source.StudyInstanceUID) == ["DX", "OT", "SR"]
    # Re-analysis on request: the new results replace the old ones (the same UIDs), never a second pair
    redone = _cli(pacs + ["analyse", source.StudyInstanceUID, "--send", "--reanalyse", "--json"], env)
    assert redone.returncode == 0, redone.stderr
    assert [len(json.loads(x)["results"]) for x in redone.stdout.splitlines() if json.loads(x)["skipped"] is None] == [2]
    assert _modalities(orthanc, source.StudyInstanceUID) == ["DX", "OT", "SR"]
    assert sum(len(s["Instances"]) for s in orthanc.study_series(source.StudyInstanceUID)) == 3


def test_the_pacs_retry_policy_is_explicit_and_bounded():
    """A dead URL gives up after `attempts` connection tries of at most connect_timeout_s each, plus the
    back-off waits (2, 4, ... x backoff_s): 7 s at most by default, within the 10 s the product promises."""
    from cxr_core.errors import CXRError
    from cxr_core.dicom.pacs import PacsServer

    s = PacsServer("http://pacs.example/dicom-web")
    worst = s.attempts * s.connect_timeout_s + sum(2 ** k * s.backoff_s for k in range(1, s.attempts))
    assert worst <= 10.0 and s.attempts >= 2
    with pytest.raises(CXRError, match="attempts 0"):
        PacsServer("http://pacs.example/dicom-web", attempts=0)


def test_pacs_errors_are_one_clear_line(orthanc, tiny_data, env):
    data = _training_like_dicom(tiny_data, modality="CT", sop_class="1.2.840.10008.5.1.4.1.1.2")
    ct_uid = pydicom.dcmread(io.BytesIO(data)).StudyInstanceUID
    orthanc.upload(data)
    dead = f"http://127.0.0.1:{free_port()}/dicom-web"
    cases = [
        (["pacs", "--url", dead, "studies"], env, "Cannot reach the PACS"),
        (["pacs", "--url", orthanc.dicomweb, "--user", USER, "studies"], {**env, "CXR_PACS_PASSWORD": "wrong"},
         "refused the credentials"),
        (["pacs", "--url", "ftp://pacs", "studies"], env, "'ftp://pacs' is invalid"),
        (["pacs", "--url", orthanc.dicomweb, "--user", USER, "analyse", "1.2.3.4.5"], env, "1.2.3.4.5"),
        (["pacs", "--url", orthanc.dicomweb, "--user", USER, "studies", "--since", "yesterday"], env, "'yesterday'"),
    ]
    for args, e, message in cases:
        res = _cli(args, e)
        assert res.returncode == 2 and message in res.stderr and "Traceback" not in res.stderr, (args, res.stderr)
        assert "wrong" not in res.stderr and PASSWORD not in res.stderr
    ct = _cli(["pacs", "--url", orthanc.dicomweb, "--user", USER, "analyse", ct_uid, "--json"], env)
    assert ct.returncode == 0, ct.stderr
    [line] = [json.loads(x) for x in ct.stdout.splitlines()]
    assert not line["assessed"] and any("CT" in r for r in line["not_assessed_reasons"])


def test_listen_analyses_c_store_forwards_to_the_pacs_refuses_ct_and_stops_on_sigterm(orthanc, tiny_data, env,
                                                                                      tmp_path):
    from pynetdicom.sop_class import CTImageStorage, DigitalXRayImageStorageForPresentation

    port = free_port()
    log = open(tmp_path / "listen.log", "wb")
    proc = subprocess.Popen([sys.executable, "-m", "cxr_core", "listen", "--port", str(port), "--aet", "CXRAI",
                             "--address", "127.0.0.1", "--forward", orthanc.dicomweb, "--forward-user", USER],
                            cwd=PROJECT_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        sources = [pydicom.dcmread(io.BytesIO(_training_like_dicom(tiny_data))) for _ in range(2)]
        ct = pydicom.dcmread(io.BytesIO(_training_like_dicom(tiny_data, modality="CT",
                                                              sop_class="1.2.840.10008.5.1.4.1.1.2")))
        statuses: dict[str, int] = {}

        def send(ds, name):
            statuses[name] = c_store(port, ds, (DigitalXRayImageStorageForPresentation, CTImageStorage))

        threads = [threading.Thread(target=send, args=(ds, f"dx{i}")) for i, ds in enumerate(sources)]
        threads.append(threading.Thread(target=send, args=(ct, "ct")))
        for t in threads:  # several associations at once
            t.start()
        for t in threads:
            t.join(timeout=240)
        assert statuses == {"dx0": 0x0000, "dx1": 0x0000, "ct": 0xC000}, statuses
        for ds in sources:
            assert _modalities(orthanc, ds.StudyInstanceUID) == ["OT", "SR"]  # results forwarded into each study
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=30)
        log.close()
    text = (tmp_path / "listen.log").read_text()
    assert code == 0 and "stopped" in text and "Traceback" not in text
    assert "refused instance" in text and "modality CT" in text
    assert "Doe" not in text and PASSWORD not in text


def test_the_pacs_page_lists_analyses_and_sends_back(orthanc, tiny_data, tiny_registry, monkeypatch):
    from datetime import date

    from streamlit.testing.v1 import AppTest

    from cxr_core.cases.store import CaseStore

    monkeypatch.setenv("CXR_REGISTRY", str(tiny_registry.root))
    monkeypatch.chdir(PROJECT_ROOT)
    data = _training_like_dicom(tiny_data)
    study_uid = pydicom.dcmread(io.BytesIO(data)).StudyInstanceUID
    orthanc.upload(data)
    at = AppTest.from_file(str(PROJECT_ROOT / "app.py"), default_timeout=120)
    at.run()
    at.switch_page("app_pages/pacs.py").run()
    at.text_input(key="pacs_url").input(orthanc.dicomweb)
    at.text_input(key="pacs_user").input(USER)
    at.text_input(key="pacs_password").input("wrong")
    at.button[0].click().run()  # the form's "List radiograph studies"
    assert not at.exception and any("refused the credentials" in e.value for e in at.error)
    at.text_input(key="pacs_password").input(PASSWORD)
    at.date_input(key="pacs_since").set_value(date(2024, 1, 1))  # the test study is dated 2024-01-02
    at.button[0].click().run()
    assert not at.exception, at.exception
    assert list(at.dataframe[0].value["study UID"]) == [study_uid]
    assert "Doe" not in str(at.dataframe[0].value)
    at.multiselect(key="pacs_chosen").set_value([study_uid]).run()
    at.toggle(key="pacs_send").set_value(True).run()
    at.button(key="pacs_analyse").click().run()
    assert not at.exception, at.exception
    [row] = at.dataframe[1].value.to_dict("records")
    assert row["result"] in ("NORMAL", "PNEUMONIA") and row["sent"] == 2
    assert _modalities(orthanc, study_uid) == ["DX", "OT", "SR"]
    assert CaseStore.open().get(int(row["case"]))["study_uid"] == study_uid
