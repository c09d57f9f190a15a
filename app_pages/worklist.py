"""Worklist: every stored case, filtered and sorted; open one in the Viewer; export reviewed cases for local
validation; the audit trail. The same case store as `python -m cxr_core cases`."""

from datetime import date

import pandas as pd
import streamlit as st

from cxr_app.state import case_store, reader_name, sidebar_model_panel
from cxr_core.cases import STATUSES
from cxr_core.errors import CXRError
from cxr_core.worklist import WorklistFilter, filter_cases

st.title("Worklist")
st.caption("Every analysed image is a case: it stays here across page switches, restarts and workstations sharing "
           "the database. Research decision support only.")
sidebar_model_panel()
store = case_store()
reader = reader_name()
if store is None:
    st.stop()
if message := st.session_state.pop("worklist_message", None):
    st.success(message, icon=":material/check:")

cases = store.list()
if not cases:
    st.info("No case yet: drop images on the Viewer, or run `python -m cxr_core predict FILES --save`.",
            icon=":material/inbox:")
    st.stop()

with st.container(border=True):
    c1, c2, c3, c4 = st.columns(4)
    statuses = c1.multiselect("Status", STATUSES, key="wl_status")
    labels = c2.multiselect("Label", ["NORMAL", "PNEUMONIA", "not assessed"], key="wl_label")
    models = c3.multiselect("Model", sorted({c["model_id"] for c in cases}), key="wl_model")
    warnings = c4.selectbox("Warnings", ["any", "with warnings", "without warnings"], key="wl_warn")
    c1, c2 = st.columns(2)
    p_range = c1.slider("P(pneumonia)", 0.0, 1.0, (0.0, 1.0), 0.01, key="wl_p")
    first = min(date.fromisoformat(c["created"][:10]) for c in cases)
    dates = c2.date_input("Created between", (first, date.today()), key="wl_dates")
try:
    chosen = WorklistFilter(statuses=tuple(statuses), labels=tuple(labels), models=tuple(models),
                            warnings={"any": None, "with warnings": True, "without warnings": False}[warnings],
                            p_min=p_range[0], p_max=p_range[1],
                            start=dates[0] if len(dates) > 0 else None, end=dates[1] if len(dates) > 1 else None)
    rows = filter_cases(cases, chosen)
except CXRError as exc:
    st.error(str(exc))
    st.stop()

table = pd.DataFrame([{
    "case": r["case_id"], "created (UTC)": pd.to_datetime(r["created"], utc=True).tz_localize(None),
    "label": r["label"] or "not assessed", "subtype": r["subtype"], "P(pneumonia)": r["pneumonia_probability"],
    "status": r["status"], "reader": (r["review"] or {}).get("reader"), "final label": (r["review"] or {}).get("label"),
    "warnings": len(r["warnings"]), "model": r["model_id"],
} for r in rows], columns=["case", "created (UTC)", "label", "subtype", "P(pneumonia)", "status", "reader",
                           "final label", "warnings", "model"])
st.caption(f"{len(rows)} of {len(cases)} case(s). Click a column header to sort; select a row to open or remove it.")
picked = st.dataframe(table, hide_index=True, width="stretch", on_select="rerun", selection_mode="single-row",
                      key="wl_table", column_config={"P(pneumonia)": st.column_config.ProgressColumn(
                          "P(pneumonia)", min_value=0.0, max_value=1.0, format="%.3f")})
selected = [int(table.iloc[i]["case"]) for i in picked.selection.rows] if picked and picked.selection.rows else []
c1, c2, _ = st.columns([1, 1, 3])
if c1.button("Open in the Viewer", icon=":material/open_in_new:", disabled=not selected, key="wl_open"):
    st.switch_page("app_pages/viewer.py", query_params={"case": str(selected[0])})
if c2.button("Remove from the worklist", icon=":material/delete:", disabled=not selected, key="wl_remove",
             help="A soft delete: the case, its image and its audit trail are kept."):
    if not reader:
        st.error("Enter your name in the sidebar first: every change is audited.")
    else:
        store.delete(selected[0], reader)
        st.session_state["worklist_message"] = f"Case {selected[0]} removed from the worklist (audited)."
        st.rerun()

st.divider()
st.subheader("Local validation")
st.caption("Export reviewed cases as a labelled folder (NORMAL/, PNEUMONIA/ with the readers' labels), then evaluate "
           "it on the Dashboards page: the site gets its own figures, and may save its own operating point there.")
c1, c2 = st.columns([3, 1])
folder = c1.text_input("Export to folder", key="wl_export_dir", placeholder="/path/to/site-validation")
reviewed_only = c2.toggle("Reviewed cases only", value=True, key="wl_reviewed_only",
                          help="Local validation needs the readers' labels; off: unreviewed cases carry the model's.")
if st.button("Export", icon=":material/download:", key="wl_export"):
    try:
        if not folder.strip():
            raise CXRError("Enter the folder to export to.")
        counts = store.export(folder.strip(), reviewed_only, actor=reader or "worklist")
        st.session_state["evaluation_path"] = folder.strip()  # pre-fills the Dashboards' evaluation field
        st.success(f"Exported {counts['NORMAL']} NORMAL and {counts['PNEUMONIA']} PNEUMONIA image(s) "
                   f"({counts['left out']} left out). Evaluate it on the Dashboards page.")
    except (CXRError, OSError) as exc:
        st.error(f"Export failed: {exc}")

with st.expander("Audit trail"):
    events = store.audit()
    st.dataframe(pd.DataFrame([{**e, "details": str(e["details"])} for e in reversed(events)]),
                 hide_index=True, width="stretch")
    st.caption(f"{len(events)} event(s), newest first. Append-only: no path in the code changes or deletes them.")
