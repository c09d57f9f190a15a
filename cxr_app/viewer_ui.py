"""Rendering of predictions in the viewer (one image's panel, the batch table)."""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Any

import pandas as pd
import streamlit as st

from cxr_app import charts
from cxr_app.radiograph import radiograph_figure
from cxr_core.model.card import ModelCard
from cxr_core.model.gradcam import overlay, shown_by_default
from cxr_core.reports.export import result_row
from cxr_core.model.predict import Prediction
from cxr_core.model.operating_point import threshold_wording
from cxr_core.reports.pdf import verdict_line

NOT_ASSESSED_NOTE = "Not assessed: this input is outside the intended use (pediatric frontal chest radiographs)."


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
    """The Viewer's display settings; the PDF uses the same overlay settings."""

    opacity: float = 0.5
    colormap: str = "inferno"
    show_overlay: bool = True  # for PNEUMONIA results; a NORMAL result's heatmap is asked for on its panel
    level: float = 0.5
    width: float = 1.0


def prediction_panel(pred: Prediction, index: int, card: ModelCard, display: Display,
                     show_identifiers: bool, case: dict[str, Any] | None = None, store: Any = None,
                     reader: str = "", dicom_source: bytes | None = None, digest: str = "") -> None:
    """One input: the radiograph (zoom, pan, window/level, Grad-CAM with its colour scale) beside the result
    and, for a stored case, the review form."""
    title = (f"Case {case['case_id']}" + ("" if pred.file == f"Case {case['case_id']}" else f": {pred.file}")
             if case else pred.file)
    st.markdown(f"#### {index + 1}. {title}")
    if pred.error:
        st.error(f"Could not read this file: {pred.error}", icon=":material/error:")
        return
    assert pred.image is not None and pred.heatmap is not None
    col_img, col_info = st.columns([1.3, 1], gap="medium")
    with col_img:
        wanted = (display.show_overlay if shown_by_default(pred) else
                  pred.assessed and st.toggle("Show the heatmap", value=False, key=f"heat_{index}",
                                              help="Off by default for a NORMAL result; on the same fixed scale."))
        heat = pred.heatmap if wanted else None
        st.plotly_chart(radiograph_figure(pred.image.pixels, heat, display.level, display.width, display.opacity,
                                          display.colormap), width="stretch", key=f"radiograph_{index}",
                        config={"scrollZoom": True, "displaylogo": False})
        st.caption(("Grad-CAM: where the model found evidence for pneumonia, on a fixed scale (a faint map is weak "
                    "evidence). " if heat is not None else
                    "No heatmap: the input was not assessed. " if not pred.assessed else "Heatmap off. ")
                   + "Scroll to zoom, drag to pan, double-click to reset.")
    with col_info:
        _result(pred, index)
        for w in pred.warnings:
            st.warning(w, icon=":material/warning:")
        _tags(pred, show_identifiers)
        if case is not None and store is not None:
            review_form(case, store, reader, index)
        _downloads(pred, index, card, display, case, digest)
        if pred.image.format == "DICOM":
            _dicom_downloads(pred, index, card, display, dicom_source,
                             f"case_{case['case_id']}" if case else digest[:12])


def _result(pred: Prediction, index: int) -> None:
    if not pred.assessed:
        st.error(NOT_ASSESSED_NOTE, icon=":material/block:")
        for reason in pred.not_assessed_reasons:
            st.markdown(f"- {reason}")
        with st.expander("Raw model output (research only, not a finding)"):
            st.caption(f"P(pneumonia) = {pred.raw_pneumonia_probability:.3f}: not a finding for this input.")
            st.plotly_chart(charts.class_bars(pred.class_probabilities), width="stretch", key=f"bars_{index}",
                            config={"displayModeBar": False})
        return
    verdict = verdict_line(pred)
    (st.error if pred.label == "PNEUMONIA" else st.success)(f"**{verdict}**")
    st.metric("P(pneumonia)", f"{pred.pneumonia_probability:.3f}",
              delta=f"{pred.pneumonia_probability - pred.threshold:+.3f} vs threshold {pred.threshold:.3f}",
              delta_color="inverse")
    st.caption(f"Decided at {threshold_wording(pred.threshold_source)} ({pred.threshold:.3f}).")
    st.plotly_chart(charts.class_bars(pred.class_probabilities), width="stretch", key=f"bars_{index}",
                    config={"displayModeBar": False})


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


def review_form(case: dict[str, Any], store: Any, reader: str, index: int) -> None:
    """Agree / disagree, the final label and a comment, signed with the sidebar's reader name: one review (audited)."""
    from cxr_core.cases.store import REVIEW_LABELS
    from cxr_core.errors import CXRError

    review = case.get("review")
    if review:
        st.info(f"Reviewed by {review['reader']} ({review['time'][:16].replace('T', ' ')} UTC): {review['decision']}, "
                f"{review['label']}" + (f". {review['comment']}" if review["comment"] else ""), icon=":material/rate_review:")
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
        st.caption(f"Reader: {reader}" if reader else "Enter your name in the sidebar: every review is signed and audited.")
        if st.form_submit_button("Save review", icon=":material/save:"):
            try:
                if decision is None or label is None:
                    raise CXRError("Choose whether you agree, and the final label, before saving.")
                store.review(case["case_id"], decision, label, reader, comment)
                st.session_state["review_message"] = f"Case {case['case_id']}: review saved."
                st.rerun()
            except CXRError as exc:
                st.error(str(exc))


def _downloads(pred: Prediction, index: int, card: ModelCard, display: Display, case: dict[str, Any] | None,
               digest: str) -> None:
    from cxr_core.reports.pdf import build_pdf, report_name

    def pdf() -> bytes:  # built only when downloaded, with the overlay settings on screen
        return build_pdf(pred, overlay(pred.image.pixels, pred.heatmap, alpha=display.opacity, colormap=display.colormap),
                         card, case=case)

    st.download_button("Download PDF report", data=pdf, file_name=report_name(case, digest),
                       mime="application/pdf", key=f"pdf_{index}", icon=":material/picture_as_pdf:")


def csv_bytes(df: pd.DataFrame) -> bytes:
    buf = io.StringIO()
    df.to_csv(buf, index=False)
    return buf.getvalue().encode()


def _dicom_downloads(pred: Prediction, index: int, card: ModelCard, display: Display,
                     source: bytes | None, name: str) -> None:
    """The DICOM results for the PACS (cxr_core.dicom.results), built only when downloaded."""
    from cxr_core.dicom.results import heatmap_pm, overlay_sc, read_source, result_sr, to_bytes

    if source is None:
        st.caption("DICOM results (SR, parametric map, secondary capture) need the original file: drop it on the "
                   "Viewer again.")
        return
    c1, c2, c3 = st.columns(3)
    c1.download_button("DICOM structured report", data=lambda: to_bytes(result_sr(read_source(source), pred, card)),
                       file_name=f"cxr_result_{name}_SR.dcm", mime="application/dicom", key=f"sr_{index}",
                       icon=":material/description:")
    if pred.assessed:
        c2.download_button("DICOM Grad-CAM capture", key=f"sc_{index}", icon=":material/image:",
                           data=lambda: to_bytes(overlay_sc(read_source(source), overlay(
                               pred.image.pixels, pred.heatmap, alpha=display.opacity, colormap=display.colormap), pred,
                               card.model_id)),
                           file_name=f"cxr_result_{name}_SC.dcm", mime="application/dicom")
        c3.download_button("DICOM Grad-CAM map", key=f"pm_{index}", icon=":material/layers:",
                           data=lambda: to_bytes(heatmap_pm(read_source(source), pred, card)),
                           file_name=f"cxr_result_{name}_PM.dcm", mime="application/dicom")
