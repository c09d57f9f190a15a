"""Worklist: every stored case, filtered and sorted; open one in the Viewer; export reviewed cases for local
validation; the audit trail. The same case store as `python -m cxr_core cases`."""

import pandas as pd
import streamlit as st

from cxr_app.state import case_store, reader_name, sidebar_model_panel
from cxr_core.cases.store import STATUSES
from cxr_core.errors import CXRError
from cxr_core.settings import current
from cxr_core.cases.worklist import WorklistFilter, filter_cases

st.title("Worklist")
st.caption("Every analysed image is a case: it stays here across page switches, restarts and workstations sharing "
           "the database. Research decision support only.")
store = case_store()
sidebar_model_panel(store)
reader = reader_name()
if store is None:
    st.stop()
if message := st.session_state.pop("worklist_message", None):
    st.success(message, icon=":material/check:")

SELECTED = "wl_selected_case"  # the case the reader picked, by id: a refresh that adds rows above it keeps it


def _remember_selection() -> None:
    """The table's selection as a case id, at the moment the reader clicks (rows shift when cases arrive)."""
    rows = st.session_state["wl_table"].selection.rows
    shown = st.session_state.get("wl_shown_ids", [])
    st.session_state[SELECTED] = shown[rows[0]] if rows and rows[0] < len(shown) else None


@st.fragment(run_every=current().worklist_refresh_s or None)
def worklist_table() -> None:
    """The filters and the triage table; re-run every CXR_WORKLIST_REFRESH_S seconds, so cases stored by
    colleagues, other workstations and the DICOM listener appear without a reload (filters and selection kept)."""
    cases = store.list()
    with st.container(border=True):
        c1, c2, c3, c4 = st.columns(4)
        statuses = c1.multiselect("Status", STATUSES, key="wl_status")
        labels = c2.multiselect("Label", ["NORMAL", "PNEUMONIA", "not assessed"], key="wl_label")
        models = c3.multiselect("Model", sorted({c["model_id"] for c in cases} | set(st.session_state.get("wl_model", []))),
                                key="wl_model")
        warnings = c4.selectbox("Warnings", ["any", "with warnings", "without warnings"], key="wl_warn")
        c1, c2 = st.columns(2)
        p_range = c1.slider("P(pneumonia)", 0.0, 1.0, (0.0, 1.0), 0.01, key="wl_p")
        dates = c2.date_input("Created between (UTC; empty: any date)", [], key="wl_dates")
    try:
        chosen = WorklistFilter(statuses=tuple(statuses), labels=tuple(labels), models=tuple(models),
                                warnings={"any": None, "with warnings": True, "without warnings": False}[warnings],
                                p_min=p_range[0], p_max=p_range[1],
                                start=dates[0] if len(dates) > 0 else None, end=dates[1] if len(dates) > 1 else None)
        rows = filter_cases(cases, chosen)
    except CXRError as exc:
        st.error(str(exc))
        return
    if not cases:
        st.info("No case yet: drop images on the Viewer, run `python -m cxr_core predict FILES --save`, or send "
                "studies to the DICOM listener. This list refreshes itself.", icon=":material/inbox:")
        return
    with_accession = any(r["accession"] for r in rows)  # only where the deployment keeps identifiers
    table = pd.DataFrame([{
        "case": r["case_id"], "created (UTC)": pd.to_datetime(r["created"], utc=True).tz_localize(None),
        "label": r["label"] or "not assessed", "subtype": r["subtype"], "P(pneumonia)": r["pneumonia_probability"],
        "threshold": r["threshold_source"], "status": r["status"], "reader": (r["review"] or {}).get("reader"),
        "final label": (r["review"] or {}).get("label"), "study date": _study_date(r["study_date"]),
        **({"accession": r["accession"]} if with_accession else {}),
        "warnings": len(r["warnings"]), "model": r["model_id"],
    } for r in rows], columns=["case", "created (UTC)", "label", "subtype", "P(pneumonia)", "threshold", "status",
                               "reader", "final label", "study date", *(["accession"] if with_accession else []),
                               "warnings", "model"])
    st.session_state["wl_shown_ids"] = [r["case_id"] for r in rows]
    refresh = current().worklist_refresh_s
    st.caption(f"{len(rows)} of {len(cases)} case(s), most in need of a read first: not assessed, then PNEUMONIA by "
               f"P(pneumonia), then the rest; newest first within each. "
               + (f"Refreshes every {refresh:g} s. " if refresh else "")
               + "Click a column header to sort; select a row to open or remove it.")
    st.dataframe(table, hide_index=True, width="stretch", on_select=_remember_selection, selection_mode="single-row",
                 key="wl_table", column_config={
                     "P(pneumonia)": st.column_config.ProgressColumn("P(pneumonia)", min_value=0.0, max_value=1.0,
                                                                     format="%.3f"),
                     "threshold": st.column_config.TextColumn(
                         "threshold", help="Which operating point decided: the model's own or the site's.")})
    selected = st.session_state.get(SELECTED)
    if selected is not None and selected not in st.session_state["wl_shown_ids"]:
        selected = None  # filtered out, or removed in another session
    c1, c2, c3 = st.columns([1.4, 1.7, 2])
    if c1.button("Open in the Viewer", icon=":material/open_in_new:", disabled=selected is None, key="wl_open"):
        st.switch_page("app_pages/viewer.py", query_params={"case": str(selected)})
    if c2.button("Remove from the worklist", icon=":material/delete:", disabled=selected is None, key="wl_remove",
                 help="A soft delete: the case, its image and its audit trail are kept."):
        if not reader:
            st.error("Enter your name in the sidebar first: every change is audited.")
        else:
            store.delete(selected, reader)
            st.session_state["worklist_message"] = f"Case {selected} removed from the worklist (audited)."
            st.session_state[SELECTED] = None
            st.rerun()
    if selected is not None:
        c3.caption(f"Selected: case {selected}.")


def _study_date(value: str | None) -> str | None:
    """DICOM's YYYYMMDD as YYYY-MM-DD."""
    return f"{value[:4]}-{value[4:6]}-{value[6:8]}" if value and len(value) == 8 and value.isdigit() else value


worklist_table()

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
        counts = store.export(folder.strip(), reviewed_only, actor=reader or "unsigned")
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
