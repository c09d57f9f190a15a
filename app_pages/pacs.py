"""PACS: list recent projection radiograph studies (the modalities cxr_core.safety.intended_use accepts) on a
DICOMweb server, analyse one or several (each image becomes a case), and send the DICOM results (SR, Grad-CAM
parametric map and secondary capture) back into each study. The same core functions as `python -m cxr_core pacs`."""

from datetime import date, timedelta

import pandas as pd
import streamlit as st

from cxr_app.state import page_preamble, predictor_for
from cxr_core.errors import CXRError
from cxr_core.dicom.pacs import PacsServer, analyse_study, find_studies
from cxr_core.safety.intended_use import RESEARCH_ONLY
from cxr_core.settings import current

st.title("PACS")
st.caption(f"Studies in from a PACS over DICOMweb, results back as DICOM. {RESEARCH_ONLY}.")
page = page_preamble(without_model="nothing can be analysed")
store, reader, entry, point = page.store, page.reader, page.entry, page.point

with st.form("pacs_server"):
    url = st.text_input("DICOMweb URL", value=current().pacs_url, key="pacs_url",
                        placeholder="http://pacs.example:8042/dicom-web")
    c1, c2, c3 = st.columns(3)
    user = c1.text_input("User (basic auth, optional)", key="pacs_user")
    password = c2.text_input("Password", type="password", key="pacs_password",
                             help="Kept in this browser session only; never logged or stored.")
    since = c3.date_input("Studies since", value=date.today() - timedelta(days=7), key="pacs_since")
    listed = st.form_submit_button("List radiograph studies", icon=":material/search:")


def server() -> PacsServer:
    return PacsServer(url.strip(), user.strip() or None, password or None)


def _short(uid: str | None) -> str:
    """A UID's last 12 characters: enough to tell studies apart on screen."""
    return "" if not uid else (uid if len(uid) <= 14 else f"...{uid[-12:]}")


def _date(value: str | None) -> str:
    """DICOM's YYYYMMDD as YYYY-MM-DD."""
    return f"{value[:4]}-{value[4:6]}-{value[6:8]}" if value and len(value) == 8 and value.isdigit() else (value or "")


def _time(value: str | None) -> str:
    """DICOM's HHMMSS(.ffff) as HH:MM."""
    return f"{value[:2]}:{value[2:4]}" if value and len(value) >= 4 and value[:4].isdigit() else (value or "")


if listed:
    try:
        st.session_state["pacs_studies"] = find_studies(server(), since)
    except CXRError as exc:
        st.session_state.pop("pacs_studies", None)
        st.error(str(exc), icon=":material/error:")

studies = st.session_state.get("pacs_studies")
if studies is None:
    st.info("Enter the PACS's DICOMweb address and list its studies.", icon=":material/lan:")
    st.stop()
if not studies:
    st.info("No projection radiograph study on this PACS in that period.")
    st.stop()
table = pd.DataFrame([{"date": _date(s["date"]), "time": _time(s["time"]),
                       "modalities": ", ".join(s["modalities"] or []), "description": s["description"] or "",
                       "instances": s["instances"], "study": _short(s["study_uid"])} for s in studies])
st.caption(f"{len(studies)} radiograph stud{'y' if len(studies) == 1 else 'ies'}, newest first (no patient identifiers "
           "shown; the study UID shortened to its last digits).")
st.dataframe(table, hide_index=True, width="stretch", column_config={
    "study": st.column_config.TextColumn("study", help="The end of the Study Instance UID.")})
# A chip names its study by what does not change; the count of images (which grows as results are sent back) is
# in the table, read fresh on every listing: a selected chip keeps the label it was chosen with.
labels = {s["study_uid"]: f"{_date(s['date']) or 'undated'} {_time(s['time'])} {', '.join(s['modalities'] or [])} "
                          f"{s['description'] or ''} (study {_short(s['study_uid'])})"
          for s in studies}
chosen = st.multiselect("Studies to analyse", list(labels), format_func=labels.get, key="pacs_chosen")
c1, c2 = st.columns(2)
send = c1.toggle("Send the results back into each study (SR, Grad-CAM map and secondary capture)", value=False, key="pacs_send")
reanalyse = c2.toggle("Re-analyse images this model already analysed", value=False, key="pacs_reanalyse",
                      help="Off: an image whose result from this model is already in the study is skipped. On: it is "
                           "analysed again, and sent results replace the earlier ones (same UIDs).")
if st.button(f"Analyse {len(chosen)} selected stud{'y' if len(chosen) == 1 else 'ies'}", disabled=not chosen,
             icon=":material/play_arrow:", key="pacs_analyse"):
    predictor = predictor_for(entry)
    rows = []
    bar = st.progress(0.0, text="Analysing...")
    for k, study_uid in enumerate(chosen):
        try:
            for result in analyse_study(server(), study_uid, predictor, point, send=send, store=store,
                                        actor=reader, reanalyse=reanalyse,
                                        progress=lambda done, total: bar.progress(
                                            (k + done / total) / len(chosen), text=f"Study {k + 1} of {len(chosen)}: "
                                                                                  f"{done} of {total} instance(s)")):
                pred = result.prediction
                p = pred.pneumonia_probability if pred else None
                rows.append({"result": result.outcome, "P(pneumonia)": "" if p is None else f"{p:.3f}",
                             "case": "" if result.case_id is None else str(result.case_id),
                             "sent": len(result.results) if send else 0, "study": _short(study_uid),
                             "instance": _short(result.sop_uid)})
        except CXRError as exc:  # one study's failure: say so, go on with the others
            rows.append({"result": f"failed: {exc}", "P(pneumonia)": "", "case": "", "sent": 0,
                         "study": _short(study_uid), "instance": ""})
    bar.empty()
    st.session_state["pacs_results"] = rows
if st.session_state.get("pacs_results"):
    st.subheader("Results")
    st.dataframe(pd.DataFrame(st.session_state["pacs_results"]), hide_index=True, width="stretch")
    st.caption("Each analysed image is a case in the Worklist." if store is not None else
               "The case database is unavailable: these results were not kept.")
