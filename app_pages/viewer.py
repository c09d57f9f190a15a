"""Viewer: drop chest X-rays, get the label, probabilities, Grad-CAM and a report per image."""

import streamlit as st

from cxr_app.state import predictor_for, sidebar_model_panel
from cxr_app.viewer_ui import csv_bytes, prediction_panel, results_table
from cxr_core.export import FILE_NAME_NOTE, content_hash, utc_now

st.title("Chest X-ray viewer")
st.caption("Pediatric frontal chest radiographs. Research decision support only: every result needs a clinician's review.")

entry = sidebar_model_panel()
uploads = st.file_uploader("Drop chest X-rays here (JPEG, PNG or DICOM; one or many)", accept_multiple_files=True,
                           key="uploads")
with st.expander("Display", expanded=False):
    c1, c2, c3, c4 = st.columns(4)
    opacity = c1.slider("Overlay opacity", 0.0, 1.0, 0.4, 0.05)
    colormap = c2.selectbox("Colour map", ["jet", "inferno", "viridis", "turbo", "hot"])
    show_overlay = c3.toggle("Show Grad-CAM", value=True)
    show_ids = c4.toggle("Show patient identifiers", value=False, help="DICOM patient tags; shown on screen only, never exported.")
    with_names = st.toggle("Include original file names in exports", value=False, help=FILE_NAME_NOTE)

if entry is None:
    st.warning("No model is available, so nothing can be predicted. Train one on the Training page.")
    st.stop()
if not uploads:
    st.info("Drop one or more images above to start.", icon=":material/upload:")
    st.stop()

predictor = predictor_for(entry)
cache = st.session_state.setdefault("predictions", {})  # this session only, in memory
digests: dict[str, object] = {}  # content hash -> first upload with that content: a file dropped twice is one row
for u in uploads:
    digests.setdefault(content_hash(u.getvalue()), u)
todo = [(d, u) for d, u in digests.items() if (d, entry.model_id) not in cache]
if todo:
    bar = st.progress(0.0, text=f"Analysing {len(todo)} image(s)...")
    for i, (digest, upload) in enumerate(todo):
        cache[(digest, entry.model_id)] = predictor.predict(upload.getvalue(), name=upload.name)
        bar.progress((i + 1) / len(todo), text=f"Analysed {i + 1} of {len(todo)}")
    bar.empty()
for key in [k for k in cache if k[0] not in digests]:
    del cache[key]  # forget removed uploads
preds = [cache[(d, entry.model_id)] for d in digests]
if len(digests) < len(uploads):
    st.caption(f"{len(uploads) - len(digests)} duplicate upload(s) (same content) shown once.")

if len(preds) > 1:
    st.subheader("Results")
    table = results_table(preds, list(digests), entry.model_id, utc_now(), include_file_name=with_names)
    st.dataframe(table, hide_index=True, width="stretch")
    c1, c2 = st.columns(2)
    c1.download_button("Download results (CSV)", csv_bytes(table), "cxr_results.csv", "text/csv", icon=":material/download:")
    c2.download_button("Download results (JSON)", table.to_json(orient="records", indent=1), "cxr_results.json",
                       "application/json", icon=":material/download:")
    st.divider()
for i, pred in enumerate(preds):
    prediction_panel(pred, i, entry.card, opacity, colormap, show_overlay, show_ids)
    st.divider()
