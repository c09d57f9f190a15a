"""Rendering of predictions in the viewer (one image's panel, the batch table)."""

from __future__ import annotations

import io
from typing import Any

import pandas as pd
import streamlit as st

from cxr_app import charts
from cxr_core.gradcam import overlay
from cxr_core.export import result_row
from cxr_core.predict import Prediction

NOT_ASSESSED_NOTE = "Not assessed: this input is outside the intended use (pediatric frontal chest radiographs)."


def results_table(preds: list[Prediction], digests: list[str], model_id: str, exported: str,
                  include_file_name: bool = False) -> pd.DataFrame:
    """The sortable batch table; also the CSV and JSON exports (cxr_core.export.result_row)."""
    return pd.DataFrame([result_row(p, i + 1, d, model_id, exported, include_file_name)
                         for i, (p, d) in enumerate(zip(preds, digests))])


def prediction_panel(pred: Prediction, index: int, card: dict[str, Any], opacity: float, colormap: str,
                     show_overlay: bool, show_identifiers: bool) -> None:
    st.markdown(f"#### {index + 1}. {pred.file}")
    if pred.error:
        st.error(f"Could not read this file: {pred.error}", icon=":material/error:")
        return
    assert pred.image is not None and pred.heatmap is not None
    col_img, col_cam, col_info = st.columns([1, 1, 1.1], gap="medium")
    col_img.image(pred.image.pixels, caption="Radiograph", clamp=True, width="stretch")
    if not pred.assessed:
        col_cam.caption("No heatmap: the input was not assessed.")
    elif show_overlay:
        col_cam.image(overlay(pred.image.pixels, pred.heatmap, alpha=opacity, colormap=colormap),
                      caption="Grad-CAM: regions that raised the shown class", width="stretch")
    else:
        col_cam.caption("Overlay hidden.")
    with col_info:
        if not pred.assessed:
            st.error(NOT_ASSESSED_NOTE, icon=":material/block:")
            for reason in pred.not_assessed_reasons:
                st.markdown(f"- {reason}")
            with st.expander("Raw model output (research only, not a finding)"):
                st.caption(f"P(pneumonia) = {pred.raw_pneumonia_probability:.3f}: not a finding for this input.")
                st.plotly_chart(charts.class_bars(pred.class_probabilities), width="stretch", key=f"bars_{index}",
                                config={"displayModeBar": False})
        else:
            verdict = pred.label + (f" ({pred.subtype.lower()} pattern more likely)" if pred.subtype else "")
            (st.error if pred.label == "PNEUMONIA" else st.success)(f"**{verdict}**")
            st.metric("P(pneumonia)", f"{pred.pneumonia_probability:.3f}",
                      delta=f"{pred.pneumonia_probability - pred.threshold:+.3f} vs threshold {pred.threshold:.3f}",
                      delta_color="inverse")
            st.plotly_chart(charts.class_bars(pred.class_probabilities), width="stretch", key=f"bars_{index}",
                            config={"displayModeBar": False})
        for w in pred.warnings:
            st.warning(w, icon=":material/warning:")
        meta = pred.image.metadata
        if pred.image.format == "DICOM":
            st.caption("DICOM tags")
            st.table(pd.DataFrame({"tag": list(meta), "value": list(meta.values())}))
            if pred.image.identifiers:
                if show_identifiers:
                    st.caption("Patient identifiers (shown on screen only; never exported)")
                    st.table(pd.DataFrame({"tag": list(pred.image.identifiers), "value": list(pred.image.identifiers.values())}))
                else:
                    st.caption(f"{len(pred.image.identifiers)} identifying tag(s) hidden.")
        from cxr_core.report import build_pdf

        def pdf() -> bytes:  # built only when downloaded, with the overlay settings on screen
            return build_pdf(pred, overlay(pred.image.pixels, pred.heatmap, alpha=opacity, colormap=colormap), card,
                             image_label=f"Image {index + 1}")

        st.download_button("Download PDF report", data=pdf, file_name=f"cxr_report_{index + 1}.pdf",
                           mime="application/pdf", key=f"pdf_{index}", icon=":material/picture_as_pdf:")


def csv_bytes(df: pd.DataFrame) -> bytes:
    buf = io.StringIO()
    df.to_csv(buf, index=False)
    return buf.getvalue().encode()
