"""Viewer: drop chest X-rays, get the label, P(pneumonia) against the threshold, Grad-CAM, a review form and a
report per image, one case at a time with Previous / Next (or all at once).

Every upload becomes a case in the worklist at once (cxr_core.cases.store), so it survives page switches and
restarts; `?case=N` (the Worklist's "Open") shows a stored case.
"""

import streamlit as st

from cxr_app.state import page_preamble, predictor_for, provenance
from cxr_app.viewer_ui import SAMPLE_NOTE, Display, csv_bytes, prediction_panel, results_table, sample_films
from cxr_core.errors import CXRError
from cxr_core.reports.export import FILE_NAME_NOTE, content_hash, utc_now
from cxr_core.safety.intended_use import INTENDED_INPUTS, RESEARCH_ONLY

SESSION_CASES = "viewer_cases"  # this session's case ids, in upload order (survives page switches)
SAMPLES = "viewer_samples"  # the sample films asked for this session: [(display name, bytes)]
AT = "viewer_at"  # the position of the case shown (one at a time)

page = page_preamble(without_model="nothing can be predicted")
store, entry, point = page.store, page.entry, page.point
generation = st.session_state.setdefault("uploader_generation", 0)  # Clear starts a fresh, empty uploader
busy = bool(st.session_state.get(SESSION_CASES) or st.session_state.get("unstored") or st.query_params.get("case"))
# With results on screen the title, the drop zone and the display settings share one row, so the verdict, P and
# the film stay above the fold at 1280 x 800; before that, the drop zone is the page.
top = st.columns([1.5, 1.2, 1], vertical_alignment="center") if busy else [st.container()] * 3
(top[0].subheader if busy else top[0].title)("Chest X-ray viewer")
with top[1].expander("Add films", expanded=False) if busy else top[1]:
    uploads = st.file_uploader("Drop chest X-rays here (JPEG, PNG or DICOM; one or many). "
                               f"{INTENDED_INPUTS.capitalize()}; {RESEARCH_ONLY.lower()}.", accept_multiple_files=True,
                               key=f"uploads_{generation}")
    samples = sample_films()
    if samples:
        c1, c2 = st.columns([2, 1], vertical_alignment="bottom")
        sample = c1.selectbox("Sample films", list(samples), key="sample_pick", help=SAMPLE_NOTE)
        if c2.button("Try a sample film", icon=":material/science:", key="sample_try", help=SAMPLE_NOTE):
            st.session_state.setdefault(SAMPLES, []).append((sample, samples[sample].read_bytes()))
        st.caption(f"Sample films: {SAMPLE_NOTE[0].lower()}{SAMPLE_NOTE[1:]}")
with top[2].expander("Display", expanded=False):
    display = Display(opacity=st.slider("Overlay opacity", 0.0, 1.0, 0.5, 0.05, key="opacity"),
                      colormap=st.selectbox("Colour map", ["inferno", "viridis", "hot", "turbo", "jet"], key="colormap"),
                      show_overlay=st.toggle("Show Grad-CAM on PNEUMONIA results", value=True, key="show_overlay",
                                             help="A NORMAL result's heatmap is off; each such result has its own toggle."))
    show_ids = st.toggle("Show patient identifiers", value=False, key="show_ids",
                         help="DICOM patient tags; shown on screen only, never exported.")
    with_names = st.toggle("Include original file names in exports", value=False, key="with_names", help=FILE_NAME_NOTE)
    show_all = st.toggle("Show every case at once", value=False, key="show_all",
                         help="Off: one case at a time, with Previous and Next.")

predictor = predictor_for(entry)  # shared by every session; `point` is resolved for this rerun only
st.caption(f"Answered by `{entry.model_id}`. " + (provenance(entry) or ""))
if message := st.session_state.pop("review_message", None):
    st.success(message, icon=":material/check:")

# ---- new uploads: predicted once, stored as cases at once (or kept for this session when the store is down)
memory = st.session_state.setdefault("unstored", {})  # content hash -> Prediction, only without a case store
case_ids: list[int] = st.session_state.setdefault(SESSION_CASES, [])
seen = st.session_state.setdefault("uploaded_hashes", {})  # (content hash, model id) -> case id or None
identifiers = st.session_state.setdefault("identifiers", {})  # case id -> DICOM identifiers, on screen only
names = st.session_state.setdefault("names", {})  # case id -> the uploaded file's name, on screen only
sources = st.session_state.setdefault("dicom_sources", {})  # case id -> the DICOM file (for its DICOM results)
stored = st.session_state.setdefault("stored_results", {})  # case id -> its stored result (never changes)
dropped = [(u.name, u.getvalue()) for u in uploads or []] + list(st.session_state.get(SAMPLES, []))
hashed = [(content_hash(data), name, data) for name, data in dropped]
todo = [(digest, name, data) for digest, name, data in hashed if (digest, entry.model_id) not in seen]
if todo:
    bar = st.progress(0.0, text=f"Analysing {len(todo)} image(s)...")
    first_new = None
    for i, (digest, name, data) in enumerate(todo):
        pred, case_id = predictor.predict(data, name=name, point=point), None
        try:
            case_id = page.keep(pred, data, predictor,
                                cam_settings={"opacity": display.opacity, "colormap": display.colormap}).case_id
        except CXRError as exc:  # e.g. a full disk or a lost database connection
            st.error(f"{name} was analysed but could not be kept as a case ({exc}); it is shown for this "
                     "session only.", icon=":material/error:")
        if case_id is not None:
            identifiers[case_id], names[case_id] = pred.image.identifiers, name
            if pred.image.format == "DICOM":
                sources[case_id] = data
            if case_id not in case_ids:
                case_ids.append(case_id)
            first_new = case_ids.index(case_id) if first_new is None else first_new
        else:
            memory[digest] = pred
        seen[(digest, entry.model_id)] = case_id
        bar.progress((i + 1) / len(todo), text=f"Analysed {i + 1} of {len(todo)}")
    bar.empty()
    if first_new is not None:
        st.session_state[AT] = first_new  # the first new film is the one shown
    if not busy:  # the first results: draw them in the compact layout, the verdict above the fold
        st.rerun()

opened = st.query_params.get("case")
if opened is not None and store is not None:
    try:
        opened_id = int(opened)
        store.get(opened_id)
        if opened_id not in case_ids:
            case_ids.insert(0, opened_id)
            st.session_state[AT] = 0
    except (ValueError, CXRError):
        st.error(f"There is no case {opened!r} in the worklist.", icon=":material/error:")

shown = []  # (prediction, case JSON or None, content hash)
for case_id in list(case_ids):
    try:
        case = store.get(case_id) if store is not None else None
    except CXRError:  # removed from the worklist in another session
        case_ids.remove(case_id)
        continue
    if case is not None:
        if case_id not in stored:  # decoded once per session, not on every rerun
            pred = stored[case_id] = store.prediction(case_id)
            pred.image.identifiers = pred.image.identifiers or identifiers.get(case_id, {})
            pred.file = names.get(case_id, pred.file)
        shown.append((stored[case_id], case, case["image_hash"][:12]))
shown += [(pred, None, digest) for digest, pred in memory.items()]

if not shown:
    st.info("Drop one or more images above, try a sample film, or open a case from the Worklist.",
            icon=":material/upload:")
    st.stop()


def _clear() -> None:
    for key in (SESSION_CASES, "unstored", "uploaded_hashes", "identifiers", "names", "dicom_sources",
                "stored_results", SAMPLES, AT, f"uploads_{generation}"):
        st.session_state.pop(key, None)
    st.session_state["uploader_generation"] = generation + 1  # the uploader's files go too, not only the results
    st.query_params.pop("case", None)


at = min(max(0, st.session_state.get(AT, 0)), len(shown) - 1)
c1, c2, c3, c4 = st.columns([1, 2.2, 1, 1.3], vertical_alignment="center")
if len(shown) > 1 and not show_all:
    if c1.button("Previous case", icon=":material/arrow_back:", disabled=at == 0, key="viewer_prev"):
        at -= 1
    if c3.button("Next case", icon=":material/arrow_forward:", disabled=at == len(shown) - 1, key="viewer_next"):
        at += 1
    st.session_state[AT] = at
    c2.caption(f"**{at + 1} of {len(shown)}** image(s) this session" +
               (": each is a case in the Worklist." if store is not None else "."))
else:
    c2.caption(f"{len(shown)} image(s) this session" + (": each is a case in the Worklist." if store is not None else "."))
if c4.button("Clear the Viewer", icon=":material/clear_all:", help="The cases stay in the Worklist.", key="viewer_clear"):
    _clear()
    st.rerun()

panels = list(enumerate(shown)) if show_all or len(shown) == 1 else [(at, shown[at])]
for i, (pred, case, digest) in panels:
    prediction_panel(pred, i, entry.card, display, show_ids, case=case,
                     dicom_source=sources.get(case["case_id"]) if case else None, digest=digest, request=page)
    st.divider()

if len(shown) > 1:
    with st.expander(f"All {len(shown)} results: table and downloads", expanded=show_all):
        table = results_table([p for p, _, _ in shown], [d for _, _, d in shown],
                              [c["model_id"] if c else entry.model_id for _, c, _ in shown], utc_now(),
                              include_file_name=with_names, case_numbers=[c["case_id"] if c else None for _, c, _ in shown])
        st.dataframe(table.astype(object).where(table.notna(), ""), hide_index=True, width="stretch")
        c1, c2 = st.columns(2)
        c1.download_button("Download results (CSV)", csv_bytes(table), "cxr_results.csv", "text/csv",
                           icon=":material/download:")
        c2.download_button("Download results (JSON)", table.to_json(orient="records", indent=1), "cxr_results.json",
                           "application/json", icon=":material/download:")
