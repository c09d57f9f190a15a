"""One-page PDF report per image (fpdf2): image, Grad-CAM overlay, probabilities, model, the operating point
and its source, and the intended-use disclaimer; for a stored case also its case number, content hash, the
DICOM study date and Study / SOP Instance UIDs, and the reader's review. Deliberately carries no patient
identifier and no file name (file names often contain patient names): the case is named by its number.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from ..model.card import ModelCard
from ..model.gradcam import shown_by_default
from ..model.decision import SUBTYPE_UNCERTAIN, within_pneumonia
from ..model.operating_point import threshold_wording
from ..model.predict import Prediction
from ..safety.intended_use import INTENDED_USE, NOT_ASSESSED, TRAINED_ON, UNKNOWN_ELSEWHERE
from ..validation.external import external_sentence
from ..validation.figures import own_figures
from ..validation.site_point import SiteFigures
from PIL import Image


def report_name(case: dict[str, Any] | None, content_hash: str) -> str:
    """The PDF's file name: by case number, else (a result not kept as a case) by content hash."""
    return f"cxr_report_case_{case['case_id']}.pdf" if case else f"cxr_report_{content_hash[:12]}.pdf"


def build_pdf(pred: Prediction, overlay_rgb: np.ndarray, model_card: ModelCard,
              case: dict[str, Any] | None = None, site: SiteFigures | None = None, now: str | None = None) -> bytes:
    """PDF bytes for one decoded input (pred.image must hold the pixels), traceable to its case (`case`: the
    case store's JSON object) when it is one. An input that was not assessed gets its reasons, no probability
    and no heatmap. `site`: the site's figures (cxr_core.validation.site_point.SiteFigures), quoted before the
    model's own when reportable; `now`: how a stored decision would read now (operating_point.reading_now)."""
    from fpdf import FPDF  # lazy: heavy

    if pred.error or pred.image is None:
        raise ValueError("a report needs a successful prediction with its image")
    pdf = FPDF(format="A4", unit="mm")
    pdf.set_auto_page_break(False)
    pdf.add_page()
    pdf.set_title("Chest X-ray pneumonia assistant report")
    pdf.set_creator("cxr_core")  # no author / subject metadata: nothing identifying
    pdf.set_font("Helvetica", "B", 16)
    pdf.cell(0, 10, "Chest X-ray pneumonia assistant - research report", new_x="LMARGIN", new_y="NEXT")
    pdf.set_font("Helvetica", "", 9)
    pdf.multi_cell(0, 4.5, INTENDED_USE, new_x="LMARGIN", new_y="NEXT")
    pdf.ln(1)
    pdf.set_font("Helvetica", "", 8)
    for line in _trace_lines(case):
        pdf.cell(0, 4, _latin1(line), new_x="LMARGIN", new_y="NEXT")
    pdf.ln(1)

    gray = Image.fromarray((np.clip(pred.image.pixels, 0, 1) * 255).astype(np.uint8), "L")
    over = Image.fromarray(overlay_rgb, "RGB")
    w = 88
    h = w * gray.height / gray.width
    y = pdf.get_y()
    pdf.image(gray, x=10, y=y, w=w, h=min(h, 110))
    if shown_by_default(pred):  # the same rule as the Viewer: a heatmap for a PNEUMONIA result
        pdf.image(over, x=110, y=y, w=w, h=min(h, 110))
    pdf.set_y(y + min(h, 110) + 1)
    pdf.set_font("Helvetica", "I", 8)
    label = f"Case {case['case_id']}" if case else "This image"
    pdf.cell(100, 4, _latin1(f"{label}: radiograph{acquisition_note(pred.image.metadata)}"))
    pdf.cell(0, 4, "Grad-CAM: evidence for pneumonia, fixed scale" if shown_by_default(pred) else
             "No heatmap for a NORMAL result" if pred.assessed else "", new_x="LMARGIN", new_y="NEXT")
    pdf.ln(3)

    pdf.set_font("Helvetica", "B", 13)
    if not pred.assessed:
        pdf.cell(0, 8, f"{NOT_ASSESSED}. No finding is reported.",
                 new_x="LMARGIN", new_y="NEXT")
        pdf.set_font("Helvetica", "", 10)
        for reason in pred.not_assessed_reasons:
            pdf.multi_cell(0, 5, f"Reason: {_latin1(reason)}", new_x="LMARGIN", new_y="NEXT")
    else:
        pdf.cell(0, 8, f"Model output: {verdict_line(pred)}", new_x="LMARGIN", new_y="NEXT")
        pdf.set_font("Helvetica", "", 10)
        pdf.cell(0, 6, f"P(pneumonia) = {pred.pneumonia_probability:.3f}   operating threshold = {pred.threshold:.3f} "
                 f"({threshold_wording(pred.threshold_source)})", new_x="LMARGIN", new_y="NEXT")
        split = within_pneumonia(pred.class_probabilities)
        if pred.label == "PNEUMONIA" and split:
            pdf.cell(0, 5, f"  Subtype, as shares within pneumonia: bacterial {split['BACTERIAL']:.0%}, viral "
                     f"{split['VIRAL']:.0%}", new_x="LMARGIN", new_y="NEXT")
    if now:
        pdf.set_font("Helvetica", "B", 10)
        pdf.multi_cell(0, 5, _latin1(f"Now: {now} The decision above is the one given when the case was analysed."),
                       new_x="LMARGIN", new_y="NEXT")
        pdf.set_font("Helvetica", "", 10)
    for w_ in pred.warnings:
        pdf.set_text_color(170, 60, 0)
        pdf.multi_cell(0, 5, f"Warning: {_latin1(w_)}", new_x="LMARGIN", new_y="NEXT")
    pdf.set_text_color(0, 0, 0)
    review = (case or {}).get("review")
    pdf.set_font("Helvetica", "B" if review else "I", 10)
    pdf.multi_cell(0, 5, _latin1(
        f"Reader review: {review['reader']} ({review['time'][:16].replace('T', ' ')} UTC): {review['decision']}, "
        f"final label {review['label']}" + (f". {review['comment']}" if review["comment"] else "") if review else
        "Reader review: none recorded yet."), new_x="LMARGIN", new_y="NEXT")
    pdf.ln(2)
    pdf.set_font("Helvetica", "", 9)
    if site is not None and site.reportable:
        pdf.multi_cell(0, 4.5, _latin1(site.sentence()), new_x="LMARGIN", new_y="NEXT")
    own = own_figures(model_card)  # the sidebar's words: a site-adapted model's own figures are this site's
    pdf.multi_cell(0, 4.5, _latin1(f"Model: {model_card.name} version {model_card.version} ({model_card.model_id}). "
                                   f"{own.heading}: {own.sentence}"), new_x="LMARGIN", new_y="NEXT")
    if model_card.external_validation:
        pdf.multi_cell(0, 4.5, _latin1(f"{model_card.external_label}: "
                                       f"{external_sentence(model_card.external_validation)}"),
                       new_x="LMARGIN", new_y="NEXT")
    pdf.ln(1)
    pdf.multi_cell(0, 4.5, f"{TRAINED_ON}. {UNKNOWN_ELSEWHERE} Not a diagnosis.", new_x="LMARGIN", new_y="NEXT")
    pdf.set_y(-15)
    pdf.set_font("Helvetica", "I", 8)
    pdf.cell(0, 5, f"Generated {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}", align="R")
    return bytes(pdf.output())


def verdict_line(pred: Prediction) -> str:
    """The decision in words, the same on every surface: "PNEUMONIA (viral pattern more likely)", "PNEUMONIA
    (subtype uncertain)" when the subtype margin is below the model's stated one, or "NORMAL"."""
    if not pred.subtype:
        return str(pred.label)
    if pred.subtype == SUBTYPE_UNCERTAIN:
        return f"{pred.label} (subtype uncertain)"
    return f"{pred.label} ({pred.subtype.lower()} pattern more likely)"


def _trace_lines(case: dict[str, Any] | None) -> list[str]:
    """What ties the report to its case: number, content hash, and for DICOM the study date and UIDs."""
    if not case:
        return ["Not kept as a case (the case database was unavailable)."]
    lines = [f"Case {case['case_id']}   content sha256 {case['image_hash']}   analysed {case['created'][:16].replace('T', ' ')} UTC"]
    if case.get("study_uid"):
        lines.append(f"Study date {case.get('study_date') or 'unknown'}   Study Instance UID {case['study_uid']}")
        lines.append(f"SOP Instance UID {case.get('sop_uid') or 'unknown'}")
    if case.get("accession"):  # only where the deployment keeps identifiers
        lines.append(f"Accession number {case['accession']}")
    return lines


def acquisition_note(metadata: dict[str, Any]) -> str:
    """", view PA, study date 2026-01-31" from the DICOM tags when known, else ""."""
    parts = []
    if metadata.get("ViewPosition"):
        parts.append(f"view {metadata['ViewPosition']}")
    date = str(metadata.get("StudyDate") or "")
    if len(date) == 8 and date.isdigit():
        parts.append(f"study date {date[:4]}-{date[4:6]}-{date[6:]}")
    return "".join(f", {p}" for p in parts)


def _latin1(text: str) -> str:
    """The core fonts are Latin-1: replace what they cannot draw rather than fail the report."""
    return text.encode("latin-1", "replace").decode("latin-1")
