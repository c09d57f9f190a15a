"""Rendering of predictions in the viewer (one image's panel, the batch table)."""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import streamlit as st

from cxr_app import charts
from cxr_app.film_component import film
from cxr_app.radiograph import film_data
from cxr_core.model.card import ModelCard
from cxr_core.model.gradcam import overlay, shown_by_default
from cxr_core.reports.export import result_row
from cxr_core.model.predict import Prediction
from cxr_core.model.decision import within_pneumonia
from cxr_core.model.operating_point import reading_now, threshold_wording
from cxr_core.request import Request
from cxr_core.safety.intended_use import INTENDED_INPUTS, NOT_ASSESSED
from cxr_core.settings import PROJECT_ROOT
from cxr_core.reports.pdf import build_pdf, report_name, verdict_line
from cxr_core.cases.store import DECISION_WORDS, REVIEW_LABELS, CaseStore
from cxr_core.cases.worklist import describe_audit
from cxr_core.dicom.results import planned_file_name, result_kinds, result_object, to_bytes
from cxr_core.dicom.source import read_source
from cxr_core.errors import CXRError
from cxr_core.validation.site_point import SiteFigures

NOT_ASSESSED_NOTE = f"{NOT_ASSESSED} ({INTENDED_INPUTS})."


def results_table(preds: list[Prediction], digests: list[str], model_id: str | list[str], exported: str,
                  include_file_name: bool = False, case_numbers: list[int | None] | None = None) -> pd.DataFrame:
    """The sortable batch table; also the CSV and JSON exports (cxr_core.reports.export.result_row). Rows are named
    by their worklist case number where stored, else by their position; `model_id` may be one per row (a case
    opened from the worklist keeps the model that produced it)."""
    numbers = case_numbers or [None] * len(preds)
    models = model_id if isinstance(model_id, list) else [model_id] * len(preds)
    return pd.DataFrame([result_row(p, n if n is not None else i + 1, d, m, exported, include_file_name)
                         for i, (p, d, n, m) in enumerate(zip(preds, digests, numbers, models))])


@dataclass(frozen=True)
class Display:
    """The Viewer's display settings; the PDF uses the same overlay settings. Window and level are each film's own
    (set beside it), not shared."""

    opacity: float = 0.5
    colormap: str = "inferno"
    show_overlay: bool = True  # for PNEUMONIA results; a NORMAL result's heatmap is asked for on its panel


def sample_films() -> dict[str, Path]:
    """The films that ship for trying the interface (assets/samples, from the training split), by display name."""
    folder = PROJECT_ROOT / "assets" / "samples"
    return {f"Sample: {p.stem.replace('-', ' ')}": p for p in sorted(folder.glob("*.jpeg"))}

FILM_PX = 380  # the radiograph's height: with the page's header, it fits above the fold at 1280 x 800
SAMPLE_NOTE = "From the training set: for trying the interface, not for judging the model."


def prediction_panel(pred: Prediction, index: int, card: ModelCard, display: Display,
                     show_identifiers: bool, case: dict[str, Any] | None = None, dicom_source: bytes | None = None,
                     digest: str = "", request: Request | None = None) -> None:
    """One input: the result (verdict, P against the threshold) beside the radiograph (zoom, pan, its own
    window/level, Grad-CAM with its colour scale); for a stored case, what it would read now, the review form and
    its audit trail. `request`: the page's (the operating point and model in use now, the site's figures for the PDF,
    the store and the reader a review is kept with)."""
    title = (f"Case {case['case_id']}" + ("" if pred.file == f"Case {case['case_id']}" else f": {pred.file}")
             if case else pred.file)
    st.markdown(f"**{title}**")
    if pred.error:
        st.error(f"Could not read this file: {pred.error}", icon=":material/error:")
        return
    assert pred.image is not None and pred.heatmap is not None
    now = point = model_in_use = site = None
    if request is not None and request.entry is not None and request.point is not None:
        point, model_in_use = request.point, request.entry.model_id
        site = request.site if request.site is not None and request.site.reportable else None
        now = reading_now(pred.assessed, pred.pneumonia_probability, pred.label,
                          case["model_id"] if case else model_in_use, point, model_in_use)
    col_img, col_info = st.columns([1.2, 1], gap="medium")
    with col_info:
        _result(pred, index, now)
    with col_img:
        film_view(pred, index, display, digest or title)
    with col_info:
        _tags(pred, show_identifiers)
        if case is not None and request is not None and request.store is not None:
            review_form(case, request, index)
            case_audit(case, request.store)
        _downloads(pred, index, card, display, case, digest, site, now)
        if pred.image.format == "DICOM":
            _dicom_downloads(pred, index, card, dicom_source)


@st.fragment
def film_view(pred: Prediction, index: int, display: Display, revision: str) -> None:
    """The radiograph (cxr_app.film_component): window/level, zoom and pan happen in the browser, with no rerun,
    so the zoom survives window/level. The heatmap toggle reruns this film only (a fragment). The component is keyed
    by a hash of `revision` (the film's content hash): a new film starts at a fresh zoom, and no name reaches the
    browser."""
    wanted = (display.show_overlay if shown_by_default(pred) else
              pred.assessed and st.toggle("Show the heatmap", value=False, key=f"heat_{index}",
                                          help="Off by default for a NORMAL result; on the same fixed scale."))
    heat = pred.heatmap if wanted else None
    key = "film_" + hashlib.sha256(f"{index}:{revision}".encode()).hexdigest()[:16]
    film(film_data(pred.image.pixels, heat, display.opacity, display.colormap), key=key, height=FILM_PX)
    st.caption(("Grad-CAM: where the model found evidence for pneumonia, on a fixed scale (a faint map is weak "
                "evidence). " if heat is not None else
                "No heatmap: the input was not assessed. " if not pred.assessed else "Heatmap off. ")
               + "Scroll to zoom, drag to pan, double-click to reset.")


def _result(pred: Prediction, index: int, now: str | None) -> None:
    """The decision first: the verdict, any warning that qualifies it, and P(pneumonia) against the threshold; then,
    where the subtype is given,
    its split as shares of pneumonia (it never competes with NORMAL)."""
    if not pred.assessed:
        st.error(NOT_ASSESSED_NOTE, icon=":material/block:")
        for reason in pred.not_assessed_reasons:
            st.markdown(f"- {reason}")
        if pred.raw_pneumonia_probability is not None:
            with st.expander("Raw model output (research only, not a finding)"):
                st.caption(f"P(pneumonia) = {pred.raw_pneumonia_probability:.3f}: not a finding for this input.")
        return
    verdict = verdict_line(pred)
    (st.error if pred.label == "PNEUMONIA" else st.success)(f"**{verdict}**")
    for w in pred.warnings:  # with the verdict it qualifies, never below the fold
        st.warning(w, icon=":material/warning:")
    st.metric("P(pneumonia)", f"{pred.pneumonia_probability:.3f}",
              delta=f"{pred.pneumonia_probability - pred.threshold:+.3f} vs threshold {pred.threshold:.3f}",
              delta_color="inverse")
    st.caption(f"Decided at {threshold_wording(pred.threshold_source)} ({pred.threshold:.3f}).")
    if now:
        st.warning(f"{now} The decision above is the one this case was given; it stays, for the audit.",
                   icon=":material/update:")
    st.plotly_chart(charts.pneumonia_bar(pred.pneumonia_probability, pred.threshold), width="stretch",
                    key=f"pbar_{index}", config={"displayModeBar": False})
    split = within_pneumonia(pred.class_probabilities)
    if pred.label == "PNEUMONIA" and split:
        st.caption("Subtype, as shares within pneumonia (stated above only where its margin is clear):")
        st.plotly_chart(charts.subtype_split(split), width="stretch", key=f"split_{index}",
                        config={"displayModeBar": False})


def case_audit(case: dict[str, Any], store: CaseStore) -> None:
    """This case's audit trail, in words: who analysed, reviewed, changed or removed it, and when."""

    with st.expander("Audit trail of this case"):
        events = store.audit(case_id=case["case_id"])
        for e in events:
            st.markdown(f"- {e['time'][:16].replace('T', ' ')} UTC, **{e['actor']}**: {e['action']}, {describe_audit(e)}")
        if not events:
            st.caption("No event recorded for this case.")


def _tags(pred: Prediction, show_identifiers: bool) -> None:
    meta = pred.image.metadata
    if pred.image.format != "DICOM":
        return
    with st.expander("DICOM tags"):
        st.table(pd.DataFrame({"tag": list(meta), "value": [str(v) for v in meta.values()]}))
    if pred.image.identifiers:
        if show_identifiers:
            st.caption("Patient identifiers (shown on screen only; never exported)")
            st.table(pd.DataFrame({"tag": list(pred.image.identifiers), "value": list(pred.image.identifiers.values())}))
        else:
            st.caption(f"{len(pred.image.identifiers)} identifying tag(s) hidden.")


def review_form(case: dict[str, Any], request: Request, index: int) -> None:
    """Agree / disagree, the final label and a comment, signed with the sidebar's reader name: one review (audited)."""

    review = case.get("review")
    if review:
        st.info(f"Reviewed by {review['reader']} ({review['time'][:16].replace('T', ' ')} UTC): "
                f"{DECISION_WORDS.get(review['decision'], review['decision'])}, "
                f"{review['label']}" + (f". {review['comment']}" if review["comment"] else ""), icon=":material/rate_review:")
        if review.get("contradiction"):
            st.warning(f"This review contradicts itself: {review['contradiction']} It is left out of exports and site "
                       "adaptation until it is changed.", icon=":material/report:")
    decisions = {"agree": "Agree", "disagree": "Disagree"}
    if case.get("subtype") in ("BACTERIAL", "VIRAL"):  # a stated subtype: it alone can be wrong
        decisions["subtype"] = "Disagree: subtype only"
    with st.form(f"review_{case['case_id']}", border=True):
        st.markdown("**Reader review**" if not review else "**Change the review**")
        # Nothing is pre-selected: the reader reads the film, then decides (no nudge toward the model's answer).
        decision = st.radio("Do you agree with the model?", list(decisions), format_func=decisions.get, index=None,
                            horizontal=True, key=f"decision_{index}")
        label = st.selectbox("Final label", REVIEW_LABELS, index=None, key=f"final_{index}",
                             placeholder="Choose the final label")
        comment = st.text_input("Comment", key=f"comment_{index}")
        st.caption(f"Reader: {request.reader}" if request.signed_in else
                   "Enter your name in the sidebar: every review is signed and audited.")
        if st.form_submit_button("Save review", icon=":material/save:"):
            try:
                if decision is None or label is None:
                    raise CXRError("Choose whether you agree, and the final label, before saving.")
                request.review(case["case_id"], decision, label, comment)
                st.session_state["review_message"] = f"Case {case['case_id']}: review saved."
                st.rerun()
            except CXRError as exc:
                st.error(str(exc))


def _downloads(pred: Prediction, index: int, card: ModelCard, display: Display, case: dict[str, Any] | None,
               digest: str, site: SiteFigures | None = None, now: str | None = None) -> None:
    def pdf() -> bytes:  # built only when downloaded, with the overlay settings on screen
        return build_pdf(pred, overlay(pred.image.pixels, pred.heatmap, alpha=display.opacity, colormap=display.colormap),
                         card, case=case, site=site, now=now)

    st.download_button("Download PDF report", data=pdf, file_name=report_name(case, digest),
                       mime="application/pdf", key=f"pdf_{index}", icon=":material/picture_as_pdf:")


def csv_bytes(df: pd.DataFrame) -> bytes:
    buf = io.StringIO()
    df.to_csv(buf, index=False)
    return buf.getvalue().encode()


def _dicom_downloads(pred: Prediction, index: int, card: ModelCard, source: bytes | None) -> None:
    """The DICOM results for the PACS: the same builders and file names as every other surface
    (cxr_core.dicom.results), each built only when downloaded."""

    if source is None:
        st.caption("DICOM results (SR, parametric map, secondary capture) need the original file: drop it on the "
                   "Viewer again.")
        return
    try:
        header = read_source(source)
    except CXRError as exc:
        st.caption(f"No DICOM results for this file: {exc}")
        return
    labels = {"SR": ("DICOM structured report", ":material/description:"),
              "SC": ("DICOM Grad-CAM capture", ":material/image:"), "PM": ("DICOM Grad-CAM map", ":material/layers:")}
    for col, which in zip(st.columns(3), ("SR", "SC", "PM")):
        if which in result_kinds(pred):
            col.download_button(labels[which][0], icon=labels[which][1], key=f"{which.lower()}_{index}",
                                data=lambda which=which: to_bytes(result_object(header, pred, card, which)),
                                file_name=planned_file_name(header.SOPInstanceUID, card.model_id, which),
                                mime="application/dicom")
