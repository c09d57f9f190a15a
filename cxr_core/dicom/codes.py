"""The codes the result objects use: standard (PS3.16, SNOMED CT, UCUM) wherever one exists; `PRIVATE_CODES` are
the three concepts none names, declared in the SR's Coding Scheme Identification Sequence (`private_scheme`)."""

from __future__ import annotations

from pydicom.dataset import Dataset
from pydicom.sr.coding import Code

from .source import MANUFACTURER

# Standard codes (PS3.16 and SNOMED CT).
PROCEDURE = Code("399208008", "SCT", "Plain chest X-ray")
DEVICE = Code("121007", "DCM", "Device")
PNEUMONIA = Code("233604007", "SCT", "Pneumonia")
SUBTYPE_FINDINGS = {"BACTERIAL": Code("53084003", "SCT", "Bacterial pneumonia"),
                    "VIRAL": Code("75570004", "SCT", "Viral pneumonia")}
PRESENT, ABSENT, UNDETERMINED = Code("52101004", "SCT", "Present"), Code("2667000", "SCT", "Absent"), \
    Code("373068000", "SCT", "Undetermined")
ETIOLOGY = Code("134198009", "SCT", "Etiology")
CAUSES = {"BACTERIAL": Code("409822003", "SCT", "Bacteria"), "VIRAL": Code("49872002", "SCT", "Virus")}
LUNG = Code("39607008", "SCT", "Lung")
PROBABILITY = Code("122157", "DCM", "Probability")
THRESHOLD = Code("122411", "DCM", "Threshold Value")
GRADCAM = Code("130403", "DCM", "Gradient-weighted class activation")
NO_UNITS = Code("1", "UCUM", "no units")
# This product's private scheme, for the concepts no standard code names (README, "Connecting to a PACS").
SCHEME = "99CXRAI"
WARNING = Code("WARNING", SCHEME, "Warning")
NOT_ASSESSED = Code("NOT_ASSESSED", SCHEME, "Reason not assessed")
DISCLAIMER = Code("INTENDED_USE", SCHEME, "Intended use")
PRIVATE_CODES = (WARNING, NOT_ASSESSED, DISCLAIMER)
def private_scheme() -> Dataset:
    item = Dataset()
    item.CodingSchemeDesignator = SCHEME
    item.CodingSchemeName = "CXR pneumonia assistant private concepts"
    item.CodingSchemeResponsibleOrganization = MANUFACTURER
    item.CodingSchemeVersion = "1"
    return item
