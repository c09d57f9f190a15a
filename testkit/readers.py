"""Readers of what the product writes, for assertions that survive a change of template: the SR's content items as
(concept name, value) text at any depth (a TID 1500 report keeps its text and codes), the text a PDF shows, and a
stand-in for the DICOMweb calls the PACS code makes."""

from __future__ import annotations

import re


def sr_items(ds) -> list[tuple[str, str]]:
    """(concept name, value) of every content item of an SR, at any depth: text, codes and numbers as text."""
    out: list[tuple[str, str]] = []

    def walk(items) -> None:
        for item in items or []:
            name = item.ConceptNameCodeSequence[0].CodeMeaning if "ConceptNameCodeSequence" in item else ""
            if "TextValue" in item:
                value = str(item.TextValue)
            elif "ConceptCodeSequence" in item:
                value = str(item.ConceptCodeSequence[0].CodeMeaning)
            elif "MeasuredValueSequence" in item and item.MeasuredValueSequence:
                value = str(item.MeasuredValueSequence[0].NumericValue)
            else:
                value = ""
            out.append((str(name), value))
            walk(item.get("ContentSequence"))

    walk(ds.get("ContentSequence"))
    return out


def sr_text(ds) -> str:
    return " ".join(f"{n}: {v}" for n, v in sr_items(ds))


def sr_subtype(ds) -> str:
    """The subtype the SR states, in the product's words: BACTERIAL, VIRAL or UNCERTAIN ('' when it states none):
    TID 1500's "Etiology" of the pneumonia finding (Bacteria, Virus or Undetermined)."""
    words = {"Bacteria": "BACTERIAL", "Virus": "VIRAL", "Undetermined": "UNCERTAIN"}
    return " ".join(words.get(v, v) for n, v in sr_items(ds) if n == "Etiology")


def sr_threshold_source(ds) -> str:
    """Where the SR says its threshold came from, as text ('' when it does not): TID 4019's algorithm parameter
    "operating threshold ... (the site's operating point | the model's threshold)"."""
    return " ".join(v for n, v in sr_items(ds) if n == "Algorithm Parameters" and "threshold" in v.lower())


def pdf_text(pdf: bytes) -> bytes:
    """The PDF's bytes with every Flate content stream inflated (fpdf2 compresses page text)."""
    import zlib

    parts = [pdf]
    # A decompressor object, not zlib.decompress: a stream whose last byte is b"\r" loses it to the line-end
    # match, and a truncated checksum must not drop the page text (it did, about one PDF in 256).
    for m in re.finditer(rb"stream\r?\n(.*?)\r?\nendstream", pdf, re.S):
        try:
            parts.append(zlib.decompressobj().decompress(m.group(1)))
        except zlib.error:
            pass
    return b"\n".join(parts)


def pdf_words(pdf: bytes) -> str:
    """The text a PDF shows, lines joined by spaces (fpdf2 writes `(text) Tj` in Flate streams)."""
    parts = re.findall(rb"\(((?:\\.|[^\\)])*)\)\s*Tj", pdf_text(pdf))
    text = " ".join(re.sub(rb"\\(.)", rb"\1", p).decode("latin-1") for p in parts)
    return re.sub(r"\s+", " ", text)


class FakePacs:
    """The DICOMweb calls `analyse_study` makes, over a list of datasets in one study."""

    url = "http://pacs.invalid/dicom-web"

    def __init__(self, datasets):
        self.datasets = datasets

    def client(self):
        return self

    def retrieve_study(self, study_uid):
        return list(self.datasets)
