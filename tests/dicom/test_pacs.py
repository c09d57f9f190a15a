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

from testkit import inputs
from tests.conftest import PROJECT_ROOT, cli_env, run_cli
from testkit.harness import c_store, free_port

ORTHANC = shutil.which("Orthanc")
DICOMWEB_PLUGIN = "/usr/share/orthanc/plugins/libOrthancDicomWeb.so"
USER, PASSWORD = "cxr", "s3cret-pw"


def _training_like_dicom(tiny_data, modality="DX", **kw) -> bytes:
    """A DICOM of a training-like image (the tiny model assesses it), with identifying tags."""
    img = cv2.imread(str(sorted((tiny_data / "PNEUMONIA").iterdir())[0]), cv2.IMREAD_GRAYSCALE)
    return inputs.dicom(array=img.astype("uint16") * 16, modality=modality, **kw)


@pytest.fixture
def env(tiny_registry):
    return cli_env(tiny_registry, CXR_PACS_PASSWORD=PASSWORD)


# ---------------------------------------------------------------------------------------------- results out
# Codes a reader of AI results knows from the standards (SNOMED CT, DICOM PS3.16), not from this product.
PNEUMONIA, PRESENT, ABSENT, UNDETERMINED = ("233604007", "SCT"), ("52101004", "SCT"), ("2667000", "SCT"), \
    ("373068000", "SCT")
SUBTYPE_FINDINGS = {"BACTERIAL": ("53084003", "SCT"), "VIRAL": ("75570004", "SCT")}
ETIOLOGY, CAUSES = ("134198009", "SCT"), {"BACTERIAL": ("409822003", "SCT"), "VIRAL": ("49872002", "SCT"),
                                         "UNCERTAIN": UNDETERMINED}
FINDING, PROBABILITY, THRESHOLD = ("121071", "DCM"), ("122157", "DCM"), ("122411", "DCM")
ALGORITHM_NAME, ALGORITHM_VERSION, ALGORITHM_PARAMETERS = ("111001", "DCM"), ("111003", "DCM"), ("111002", "DCM")
SOURCE_OF_MEASUREMENT, DEVICE_OBSERVER_NAME, DEVICE_OBSERVER_UID = ("121112", "DCM"), ("121013", "DCM"), \
    ("121012", "DCM")
PARAMETRIC_MAP = "1.2.840.10008.5.1.4.1.1.30"


def _code(seq) -> tuple[str, str]:
    return (seq[0].CodeValue, seq[0].CodingSchemeDesignator)


def _items(node, name: tuple[str, str]) -> list:
    """Every content item anywhere under `node` whose concept name is `name`: a walk of the SR tree by code."""
    found = []
    for item in node.get("ContentSequence", []):
        if "ConceptNameCodeSequence" in item and _code(item.ConceptNameCodeSequence) == name:
            found.append(item)
        found += _items(item, name)
    return found


def _group(sr, finding: tuple[str, str]):
    """The TID 1501 measurement group (a container) whose Finding is `finding`."""
    [group] = [g for g in _items(sr, ("125007", "DCM"))
               if any(_code(i.ConceptCodeSequence) == finding for i in _items(g, FINDING))]
    return group


def _export(env, tmp_path, data: bytes) -> dict:
    src = tmp_path / "source.dcm"
    src.write_bytes(data)
    out = tmp_path / "out"
    res = run_cli(["export-dicom", str(src), "--out", str(out)], env)
    assert res.returncode == 0, res.stderr
    return {p.name[:2]: p for p in out.iterdir()}


def _active_card(env):
    from cxr_core.model.registry import Registry

    return Registry(env["CXR_REGISTRY"]).active().card


def test_export_dicom_writes_a_tid1500_report_a_parametric_map_and_a_secondary_capture(tiny_data, env, tmp_path):
    """Read back as a reader of AI results would, with highdicom's TID 1500 API and a plain pydicom walk of the
    tree by code: the finding, the probability and the algorithm; the map on the source's grid, referencing it."""
    import highdicom as hd
    from pydicom.sr.codedict import codes
    from pydicom.sr.coding import Code

    data = _training_like_dicom(tiny_data)
    written = _export(env, tmp_path, data)
    assert set(written) == {"SR", "PM", "SC"}
    source = pydicom.dcmread(io.BytesIO(data))
    prediction = json.loads(run_cli(["predict", str(tmp_path / "source.dcm"), "--json"], env).stdout)
    card = _active_card(env)
    sr, pm, sc = (pydicom.dcmread(written[k]) for k in ("SR", "PM", "SC"))
    for obj in (sr, pm, sc):
        assert obj.StudyInstanceUID == source.StudyInstanceUID and obj.PatientID == source.PatientID
        assert obj.PatientName == source.PatientName
        for keyword in ("StudyDescription", "StudyDate", "StudyTime", "StudyID", "AccessionNumber",
                        "ReferringPhysicianName"):  # every result carries the study as its source does
            assert obj.get(keyword) == source.get(keyword), (obj.Modality, keyword)
        assert obj.SeriesInstanceUID != source.SeriesInstanceUID and obj.SOPInstanceUID != source.SOPInstanceUID
    assert len({obj.SeriesInstanceUID for obj in (sr, pm, sc)}) == 3

    # highdicom: the TID 1500 report, its device observer and the Pneumonia measurement group
    report = hd.sr.srread(written["SR"]).content
    assert report[0].ContentTemplateSequence[0].TemplateIdentifier == "1500"
    [observer] = report.get_observer_contexts()
    assert observer.observer_type == codes.DCM.Device
    [group] = report.get_image_measurement_groups(finding_type=Code(*PNEUMONIA, "Pneumonia"))
    [finding] = group.get_qualitative_evaluations(name=Code(*PNEUMONIA, "Pneumonia"))
    expected = PRESENT if prediction["label"] == "PNEUMONIA" else ABSENT
    assert (finding.value.value, finding.value.scheme_designator) == expected
    [probability] = group.get_measurements(name=codes.DCM.Probability)
    assert probability.value == pytest.approx(prediction["pneumonia_probability"], abs=1e-6)
    [threshold] = group.get_measurements(name=Code(*THRESHOLD, "Threshold Value"))
    assert threshold.value == pytest.approx(prediction["threshold"])
    ref = group.source_images[0].ReferencedSOPSequence[0]
    assert (ref.ReferencedSOPClassUID, ref.ReferencedSOPInstanceUID) == (source.SOPClassUID, source.SOPInstanceUID)
    for c, code in SUBTYPE_FINDINGS.items():
        [subtype] = report.get_image_measurement_groups(finding_type=Code(*code, c))
        assert subtype.get_measurements(name=codes.DCM.Probability)[0].value == pytest.approx(
            prediction["class_probabilities"][c], abs=1e-6)

    # pydicom, by code alone: finding, probability, etiology, algorithm, model id, source image, threshold's source
    pneumonia = _group(sr, PNEUMONIA)
    [finding] = _items(pneumonia, PNEUMONIA)
    assert _code(finding.ConceptCodeSequence) == expected
    assert float(_items(pneumonia, PROBABILITY)[0].MeasuredValueSequence[0].NumericValue) == pytest.approx(
        prediction["pneumonia_probability"], abs=1e-6)
    etiology = [_code(i.ConceptCodeSequence) for i in _items(pneumonia, ETIOLOGY)]
    assert etiology == ([CAUSES[prediction["subtype"]]] if prediction["subtype"] else [])
    assert [i.TextValue for i in _items(pneumonia, ALGORITHM_NAME)] == [card.name]
    assert [i.TextValue for i in _items(pneumonia, ALGORITHM_VERSION)] == [card.version]
    assert [i.TextValue for i in _items(sr, DEVICE_OBSERVER_NAME)] == [card.model_id]
    from cxr_core.dicom.source import device_uid

    [observer_uid] = [i.UID for i in _items(sr, DEVICE_OBSERVER_UID)]  # one device per model id, never per name
    assert observer_uid == device_uid(card.model_id) and observer_uid != device_uid(card.name)
    parameters = " ".join(i.TextValue for i in _items(pneumonia, ALGORITHM_PARAMETERS))
    assert card.model_id in parameters and "the model's threshold" in parameters
    [image] = _items(pneumonia, SOURCE_OF_MEASUREMENT)
    assert image.ReferencedSOPSequence[0].ReferencedSOPInstanceUID == source.SOPInstanceUID
    intended = [i.TextValue for i in _items(sr, ("INTENDED_USE", "99CXRAI"))]
    assert len(intended) == 1 and "research" in intended[0].lower()

    # The Parametric Map: float values in [0, 1] on the source's grid, the mapping that says what they are, and
    # the source image it derives from, pixel for pixel
    assert pm.SOPClassUID == PARAMETRIC_MAP and (pm.Rows, pm.Columns) == (source.Rows, source.Columns)
    assert isinstance(hd.pm.ParametricMap.from_dataset(pm), hd.pm.ParametricMap)  # highdicom reads it back
    values = pm.pixel_array
    assert values.dtype == "float32" and values.shape == (source.Rows, source.Columns)
    assert 0.0 <= values.min() and values.max() <= 1.0  # the values themselves: test_cases.py
    frame = pm.PerFrameFunctionalGroupsSequence[0]
    mapping = (frame.get("RealWorldValueMappingSequence")
               or pm.SharedFunctionalGroupsSequence[0].RealWorldValueMappingSequence)[0]
    assert _code(mapping.QuantityDefinitionSequence[0].ConceptCodeSequence) == ("130403", "DCM")
    assert _code(mapping.MeasurementUnitsCodeSequence) == ("1", "UCUM")
    assert (mapping.RealWorldValueSlope, mapping.RealWorldValueIntercept) == (1.0, 0.0)
    derived = frame.DerivationImageSequence[0].SourceImageSequence[0]
    assert derived.ReferencedSOPInstanceUID == source.SOPInstanceUID and derived.SpatialLocationsPreserved == "YES"
    assert pm.ContentDescription.startswith(f"{prediction['label']}: P(pneumonia) ")
    assert pm.Manufacturer == sr.Manufacturer == sc.Manufacturer  # how `pacs analyse` knows its own results

    assert sc.BurnedInAnnotation == "YES" and sc.pixel_array.ndim == 3 and sc.pixel_array.shape[1] >= 768


def _private_codes(node) -> list[tuple[str, str]]:
    """Every code of the private scheme used anywhere in an SR's content, as concept name or value."""
    found = []
    for item in node.get("ContentSequence", []):
        for key in ("ConceptNameCodeSequence", "ConceptCodeSequence"):
            if key in item and item[key].value and _code(item[key].value)[1] == "99CXRAI":
                found.append(_code(item[key].value))
        found += _private_codes(item)
    return found


def _dciodvfy(path) -> list[str]:
    report = subprocess.run(["dciodvfy", str(path)], capture_output=True, text=True, timeout=120)
    return [line for line in (report.stdout + report.stderr).splitlines() if line.startswith(("Error", "Warning"))]


@pytest.mark.skipif(not (shutil.which("dciodvfy") and shutil.which("dsrdump")),
                    reason="the DICOM validators are not installed (Debian: apt-get install dicom3tools dcmtk)")
@pytest.mark.parametrize("modality", ["DX", "CT"])
def test_the_sr_pm_and_sc_pass_the_standards_own_validators(tiny_data, env, tmp_path, modality):
    """dciodvfy (dicom3tools) finds no error in any object. The SR's only warnings are one per use of a declared
    private code (plus its declaration): every other code is standard. dsrdump (dcmtk) prints the TID 1500 tree.
    A CT image (not assessed) gets only the SR, whose finding is undetermined, with the reason."""
    import re

    from cxr_core.dicom.codes import PRIVATE_CODES

    data = _training_like_dicom(tiny_data, modality=modality,
                                **({"sop_class": "1.2.840.10008.5.1.4.1.1.2"} if modality == "CT" else {}))
    written = _export(env, tmp_path, data)
    assert set(written) == ({"SR", "PM", "SC"} if modality == "DX" else {"SR"})
    for kind, path in written.items():
        errors = [line for line in _dciodvfy(path) if line.startswith("Error")]
        assert errors == [], f"{kind}: {errors}"
    sr = pydicom.dcmread(written["SR"])
    assert [s.CodingSchemeDesignator for s in sr.CodingSchemeIdentificationSequence] == ["99CXRAI"]
    used = _private_codes(sr)
    assert used and set(used) <= {(c.value, c.scheme_designator) for c in PRIVATE_CODES}
    assert _dciodvfy(written["SR"]) == ["Warning - Unrecognized defined term <99CXRAI> for value 1 of attribute "
                                        "<Coding Scheme Designator>"] * (len(used) + 1)
    dumped = subprocess.run(["dsrdump", "+Pc", "+Pt", "+Pl", str(written["SR"])], capture_output=True, text=True,
                            timeout=60)
    assert dumped.returncode == 0, dumped.stderr
    tree = dumped.stdout
    assert '<CONTAINER:(126000,DCM,"Imaging Measurement Report")=CONTINUOUS>  # TID 1500' in tree
    assert '<has obs context CODE:(121005,DCM,"Observer Type")=(121007,DCM,"Device")>' in tree
    assert "# TID 1501" in tree and '<contains CODE:(121071,DCM,"Finding")=(233604007,SCT,"Pneumonia")>' in tree
    finding = "Undetermined" if modality == "CT" else "(Present|Absent)"
    assert re.search(rf'<contains CODE:\(233604007,SCT,"Pneumonia"\)=\(\d+,SCT,"{finding}"\)>', tree)
    if modality == "CT":
        assert '<contains TEXT:(NOT_ASSESSED,99CXRAI,"Reason not assessed")="' in tree and "CT" in tree
        assert '(122157,DCM,"Probability")' not in tree
    else:
        assert '<contains NUM:(122157,DCM,"Probability")=' in tree and '(111001,DCM,"Algorithm Name")' in tree


def _chosen(label: str | None, subtype: str | None = None, three_class: bool = True, shape=(60, 40),
            heatmap=None, warnings=(), reasons=()):
    """A prediction whose every answer the test chooses (the model is not asked)."""
    import numpy as np

    from cxr_core.inputs.imaging import LoadedImage
    from cxr_core.model.predict import Prediction

    assessed = label is not None
    probs = {"NORMAL": 0.3, "BACTERIAL": 0.45 if three_class else None, "VIRAL": 0.25 if three_class else None}
    return Prediction(file="x", label=label, pneumonia_probability=0.7 if assessed else None, subtype=subtype,
                      class_probabilities=probs, threshold=0.6, threshold_source="model", warnings=list(warnings),
                      assessed=assessed, not_assessed_reasons=list(reasons),
                      heatmap=(np.linspace(0, 1, 64, dtype=np.float32).reshape(8, 8) if heatmap is None else heatmap)
                      if assessed else None,
                      image=LoadedImage(np.zeros(shape, np.float32), "DICOM"))


@pytest.mark.parametrize("label, subtype, three_class, finding, etiology", [
    ("NORMAL", None, True, ABSENT, None),
    ("PNEUMONIA", "BACTERIAL", True, PRESENT, CAUSES["BACTERIAL"]),
    ("PNEUMONIA", "VIRAL", True, PRESENT, CAUSES["VIRAL"]),
    ("PNEUMONIA", "UNCERTAIN", True, PRESENT, UNDETERMINED),  # a margin below the model's: said, not guessed
    ("PNEUMONIA", None, False, PRESENT, None),  # a 2-class model states no subtype and has no subtype probabilities
    (None, None, True, UNDETERMINED, None),  # not assessed: no probability, no map, the reasons
])
def test_every_decision_path_has_its_standard_codes(tiny_model_dir, tmp_path, label, subtype, three_class, finding,
                                                   etiology):
    import numpy as np

    from cxr_core.dicom.results import kind, result_objects, to_bytes
    from cxr_core.model.folder import ModelFolder

    card = ModelFolder(tiny_model_dir).card()
    data = inputs.dicom(array=np.full((60, 40), 900, np.uint16))
    pred = _chosen(label, subtype, three_class, warnings=["Unusual exposure: check the result."],
                   reasons=[] if label else ["CT is outside the intended use (projection radiographs only)."])
    objects = result_objects(data, pred, card)
    assert [kind(o) for o in objects] == (["SR", "PM", "SC"] if label else ["SR"])
    sr = pydicom.dcmread(io.BytesIO(to_bytes(objects[0])))
    pneumonia = _group(sr, PNEUMONIA)
    assert [_code(i.ConceptCodeSequence) for i in _items(pneumonia, PNEUMONIA)] == [finding]
    assert [_code(i.ConceptCodeSequence) for i in _items(pneumonia, ETIOLOGY)] == ([etiology] if etiology else [])
    probabilities = [float(i.MeasuredValueSequence[0].NumericValue) for i in _items(sr, PROBABILITY)]
    assert probabilities == ([0.7, 0.45, 0.25] if label and three_class else [0.7] if label else [])
    assert [i.TextValue for i in _items(pneumonia, ("WARNING", "99CXRAI"))] == pred.warnings
    assert [i.TextValue for i in _items(pneumonia, ("NOT_ASSESSED", "99CXRAI"))] == pred.not_assessed_reasons
    if shutil.which("dciodvfy"):
        for obj in objects:
            (tmp_path / "obj.dcm").write_bytes(to_bytes(obj))
            assert not [x for x in _dciodvfy(tmp_path / "obj.dcm") if x.startswith("Error")], kind(obj)


@pytest.mark.parametrize("padded", [False, True])
def test_the_map_holds_the_heatmap_on_the_sources_pixel_grid(tiny_model_dir, padded):
    """The map is the source's size and its values are the model's heatmap there: a hot band in the middle of the
    model's input lands in the middle of the source; where the model saw the film padded to a square, the padding
    is cut away, so the band fills the film's width."""
    import dataclasses

    import numpy as np

    from cxr_core.dicom.pm import heatmap_pm
    from cxr_core.dicom.source import read_source
    from cxr_core.model.folder import ModelFolder

    card = ModelFolder(tiny_model_dir).card()
    card = dataclasses.replace(card, input={**card.input, "pad_to_square": padded})
    heat = np.zeros((30, 30), np.float32)
    heat[:, 5:25] = 1.0  # the film's columns when a 300 x 200 film is padded to 300 x 300
    pm = heatmap_pm(read_source(inputs.dicom(array=np.full((300, 200), 900, np.uint16))),
                    _chosen("PNEUMONIA", "VIRAL", heatmap=heat), card)
    values = pydicom.dcmread(io.BytesIO(_bytes(pm))).pixel_array
    assert values.shape == (300, 200) and values.dtype == np.float32
    centre = values[:, 90:110]
    assert np.all(centre == 1.0)
    assert (values[:, :5].max() > 0.5) == padded  # unpadded, the band's cold edges squeeze onto the film
    assert pm.ContentDescription == "PNEUMONIA: P(pneumonia) 0.700, threshold 0.600 (model)"


def _bytes(ds) -> bytes:
    from cxr_core.dicom.results import to_bytes

    return to_bytes(ds)


def test_result_uids_stay_the_same_for_one_image_one_model_and_one_kind(tiny_model_dir):
    """Re-analysis replaces instead of duplicating: the same source and model give the same Series and SOP
    Instance UIDs (and the map the same frame of reference); another model, or another image, gets its own."""
    import dataclasses

    import numpy as np

    from cxr_core.dicom.results import result_objects
    from cxr_core.model.folder import ModelFolder

    card = ModelFolder(tiny_model_dir).card()
    data, other = (inputs.dicom(array=np.full((60, 40), 900, np.uint16)) for _ in range(2))

    def uids(source, c):
        objects = result_objects(source, _chosen("PNEUMONIA", "BACTERIAL"), c)
        return [(o.SeriesInstanceUID, o.SOPInstanceUID) for o in objects] + [objects[1].FrameOfReferenceUID]

    first = uids(data, card)
    assert uids(data, card) == first
    assert len({u for pair in first[:3] for u in pair}) == 6
    assert not set(first[:3]) & set(uids(data, dataclasses.replace(card, model_id="another-model"))[:3])
    assert not set(first) & set(uids(other, card))


@pytest.mark.parametrize("name, data, message", [("photo.jpg", inputs.jpeg_gray(), "not DICOM"),
                                                 ("broken.dcm", b"DICM" * 10, "broken.dcm")])
def test_export_dicom_refuses_what_it_cannot_place_in_a_study(env, tmp_path, name, data, message):
    (tmp_path / name).write_bytes(data)
    res = run_cli(["export-dicom", str(tmp_path / name), "--out", str(tmp_path / "out")], env)
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

    def file(self, instance: str) -> bytes:
        req = urllib.request.Request(f"{self.url}/instances/{instance}/file")
        req.add_header("Authorization", "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode())
        with urllib.request.urlopen(req, timeout=20) as r:
            return r.read()

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


def _instance_of(orthanc, study_uid, kind: str) -> str:
    """The Orthanc id of the study's one instance of `kind` (SR, PM or SC)."""
    sop = {"SR": "1.2.840.10008.5.1.4.1.1.88.33", "PM": PARAMETRIC_MAP, "SC": "1.2.840.10008.5.1.4.1.1.7"}[kind]
    [found] = [i for s in orthanc.study_series(study_uid) for i in s["Instances"]
               if orthanc.get(f"/instances/{i}/simplified-tags")["SOPClassUID"] == sop]
    return found


def _kinds(orthanc, study_uid) -> list[str]:
    """The study's instances by kind: the source's modality, or SR / PM / SC for this product's results (by SOP
    class), one entry per instance."""
    kinds = {"1.2.840.10008.5.1.4.1.1.88.33": "SR", PARAMETRIC_MAP: "PM", "1.2.840.10008.5.1.4.1.1.7": "SC"}
    found = []
    for series in orthanc.study_series(study_uid):
        for instance in series["Instances"]:
            tags = orthanc.get(f"/instances/{instance}/simplified-tags")
            found.append(kinds.get(tags["SOPClassUID"], tags.get("Modality", "")))
    return sorted(found)


def test_pacs_studies_then_analyse_and_send_puts_the_results_in_the_same_study(orthanc, tiny_data, env):
    data = _training_like_dicom(tiny_data)
    source = pydicom.dcmread(io.BytesIO(data))
    orthanc.upload(data)
    orthanc.upload(_training_like_dicom(tiny_data, modality="CT", sop_class="1.2.840.10008.5.1.4.1.1.2"))
    pacs = ["pacs", "--url", orthanc.dicomweb, "--user", USER]
    listed = run_cli(pacs + ["studies", "--json"], env)
    assert listed.returncode == 0, listed.stderr
    studies = [json.loads(line) for line in listed.stdout.splitlines()]
    assert [s["study_uid"] for s in studies] == [source.StudyInstanceUID]  # the CT study is not a radiograph
    assert "Doe" not in listed.stdout and "ID-12345" not in listed.stdout and PASSWORD not in listed.stdout + listed.stderr
    assert run_cli(pacs + ["studies", "--since", "2030-01-01", "--json"], env).stdout == ""

    analysed = run_cli(pacs + ["analyse", source.StudyInstanceUID, "--send", "--json"], env)
    assert analysed.returncode == 0, analysed.stderr
    [line] = [json.loads(x) for x in analysed.stdout.splitlines()]
    assert line["assessed"] and line["label"] in ("NORMAL", "PNEUMONIA") and line["case_id"] is not None
    assert [r.split()[0] for r in line["results"]] == ["SR", "PM", "SC"]
    assert _kinds(orthanc, source.StudyInstanceUID) == ["DX", "PM", "SC", "SR"]  # one of each, same study
    for series in orthanc.study_series(source.StudyInstanceUID):
        instance = orthanc.get(f"/instances/{series['Instances'][0]}/simplified-tags")
        assert instance["PatientID"] == source.PatientID and instance["StudyInstanceUID"] == source.StudyInstanceUID
        for keyword in ("StudyDescription", "AccessionNumber", "StudyDate", "StudyID"):  # read back from Orthanc
            assert instance.get(keyword) == str(source.get(keyword)), (instance.get("Modality"), keyword)
    # Idempotent: a second "analyse --send" skips the analysed image and adds nothing; our own results are skipped
    again = run_cli(pacs + ["analyse", source.StudyInstanceUID, "--send", "--json"], env)
    skipped = sorted(str(json.loads(x)["skipped"]) for x in again.stdout.splitlines())
    assert skipped == ["already analysed by this model; re-analyse to replace"] + ["this assistant's own result"] * 3
    assert _kinds(orthanc, source.StudyInstanceUID) == ["DX", "PM", "SC", "SR"]
    # Re-analysis on request: the new results replace the old ones (the same UIDs), never a second pair
    redone = run_cli(pacs + ["analyse", source.StudyInstanceUID, "--send", "--reanalyse", "--json"], env)
    assert redone.returncode == 0, redone.stderr
    assert [len(json.loads(x)["results"]) for x in redone.stdout.splitlines() if json.loads(x)["skipped"] is None] == [3]
    assert _kinds(orthanc, source.StudyInstanceUID) == ["DX", "PM", "SC", "SR"]
    assert sum(len(s["Instances"]) for s in orthanc.study_series(source.StudyInstanceUID)) == 4
    sr = pydicom.dcmread(io.BytesIO(orthanc.file(_instance_of(orthanc, source.StudyInstanceUID, "SR"))))
    assert sr.ContentTemplateSequence[0].TemplateIdentifier == "1500"  # the TID 1500 report, as sent


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
        res = run_cli(args, e)
        assert res.returncode == 2 and message in res.stderr and "Traceback" not in res.stderr, (args, res.stderr)
        assert "wrong" not in res.stderr and PASSWORD not in res.stderr
    ct = run_cli(["pacs", "--url", orthanc.dicomweb, "--user", USER, "analyse", ct_uid, "--json"], env)
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
            assert _kinds(orthanc, ds.StudyInstanceUID) == ["PM", "SC", "SR"]  # results forwarded into each study
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
    assert list(at.dataframe[0].value["study"]) == [f"...{study_uid[-12:]}"]  # shortened, last
    assert "Doe" not in str(at.dataframe[0].value)
    at.multiselect(key="pacs_chosen").set_value([study_uid]).run()
    at.toggle(key="pacs_send").set_value(True).run()
    at.button(key="pacs_analyse").click().run()
    assert not at.exception, at.exception
    [row] = at.dataframe[1].value.to_dict("records")
    assert row["result"] in ("NORMAL", "PNEUMONIA") and row["sent"] == 3
    assert _kinds(orthanc, study_uid) == ["DX", "PM", "SC", "SR"]
    assert CaseStore.open().get(int(row["case"]))["study_uid"] == study_uid


def test_the_viewer_s_downloads_are_the_objects_every_surface_sends(tiny_model_dir):
    """The Viewer builds each download with the builder PACS, export-dicom and the listener use, names its file as
    they do (the derived SOP Instance UID), and gets the same bytes for the same case (creation times and UIDs
    aside)."""
    import numpy as np

    from cxr_core.dicom.results import file_name, kind, planned_file_name, result_object, result_objects, to_bytes
    from cxr_core.dicom.source import read_source
    from cxr_core.model.folder import ModelFolder

    card = ModelFolder(tiny_model_dir).card()
    data = inputs.dicom(array=np.full((60, 40), 900, np.uint16))
    pred = _chosen("PNEUMONIA", "BACTERIAL", True)
    header = read_source(data)

    def timeless(ds) -> bytes:
        ds = pydicom.dcmread(io.BytesIO(to_bytes(ds)))
        for element in list(ds.iterall()):  # creation times, and UIDs (highdicom draws some at random)
            if element.VR == "UI" or (element.VR in ("DA", "TM", "DT") and element.keyword.startswith(
                    ("Content", "InstanceCreation", "Contribution", "TimeOfSecondaryCapture", "DateOfSecondaryCapture"))):
                element.value = ""
        return to_bytes(ds)

    sent = result_objects(data, pred, card)
    for ds in sent:
        which = kind(ds)
        downloaded = result_object(header, pred, card, which)
        assert timeless(downloaded) == timeless(ds), which
        assert planned_file_name(header.SOPInstanceUID, card.model_id, which) == file_name(ds) == file_name(downloaded)
    viewer = (PROJECT_ROOT / "cxr_app" / "viewer_ui.py").read_text()
    assert "result_object(header, pred, card, which)" in viewer and "planned_file_name(" in viewer
