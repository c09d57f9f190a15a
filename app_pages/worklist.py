"""Worklist: every stored case, filtered and sorted; open one in the Viewer; export reviewed cases for local
validation; the audit trail. The same case store as `python -m cxr_core cases`."""

import pandas as pd
import streamlit as st

from cxr_app.state import page_preamble
from cxr_core.cases.store import STATUSES, export_sentence
from cxr_core.cases.worklist import WorklistFilter, describe_audit, filter_cases, not_chest_film, readings_now
from cxr_core.errors import CXRError
from cxr_core.safety.intended_use import RESEARCH_ONLY
from cxr_core.settings import current
from cxr_core.model.operating_point import resolve
from cxr_core.site.models import model_for

st.title("Worklist")
st.caption("Every analysed image is a case, kept across page switches, restarts and workstations sharing the "
           f"database. {RESEARCH_ONLY}.")
page = page_preamble(needs_store=True)
store, reader, entry = page.store, page.reader, page.entry
if message := st.session_state.pop("worklist_message", None):
    st.success(message, icon=":material/check:")

CONFIRM = "wl_confirm_remove"  # the case id whose removal awaits the reader's confirmation


def _points_now(cases: list[dict]) -> dict:
    """Each listed model's operating point in use now (the site's, else its own); a model no longer registered
    has none."""

    out = {}
    for model_id in {c["model_id"] for c in cases}:
        try:
            out[model_id] = resolve(model_for(model_id, store, page.registry).card, store)
        except CXRError:
            continue
    return out


def _table(rows: list[dict], now: dict[int, str]) -> pd.DataFrame:
    """The essential columns first (they fit at 1280 px); the rest after them. Empty cells say nothing."""
    with_accession = any(r["accession"] for r in rows)  # only where the deployment keeps identifiers
    frame = pd.DataFrame([{
        "case": r["case_id"], "label": r["label"] or "not assessed", "P(pneumonia)": r["pneumonia_probability"],
        "status": r["status"], "warnings": len(r["warnings"]), "now": "reads otherwise" if r["case_id"] in now else "",
        "created (UTC)": pd.to_datetime(r["created"], utc=True).tz_localize(None).strftime("%Y-%m-%d %H:%M"),
        "study date": _study_date(r["study_date"]) or "", "subtype": (r["subtype"] or "").lower(),
        "final label": (r["review"] or {}).get("label") or "", "reader": (r["review"] or {}).get("reader") or "",
        "threshold": "site" if r["threshold_source"] == "site" else "model's",
        **({"accession": r["accession"] or ""} if with_accession else {}), "model": r["model_id"],
    } for r in rows])
    return frame


def _columns() -> dict:
    return {
        "case": st.column_config.NumberColumn("case", width=60),
        "label": st.column_config.TextColumn("label", width=110),
        "P(pneumonia)": st.column_config.ProgressColumn("P(pneumonia)", min_value=0.0, max_value=1.0, format="%.3f",
                                                        width=120),
        "status": st.column_config.TextColumn("status", width=85),
        "warnings": st.column_config.NumberColumn("warnings", width=80),
        "now": st.column_config.TextColumn("now", width=120, help="The site's current operating point or the model "
                                           "in use would read this film otherwise: open it to see how."),
        "created (UTC)": st.column_config.TextColumn("created (UTC)", width=135),
        "threshold": st.column_config.TextColumn(
            "threshold", help="Which operating point decided: the model's own or the site's."),
    }


@st.fragment(run_every=current().worklist_refresh_s or None)
def worklist_table() -> None:
    """The filters and the triage table; re-run every CXR_WORKLIST_REFRESH_S seconds, so cases stored by
    colleagues, other workstations and the DICOM listener appear without a reload. The selection is a case id:
    the table's key follows the rows shown, so a refresh that inserts, removes or reorders rows starts a fresh
    table with nothing ticked (a tick never moves to another case); the caption and buttons read the same tick."""
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
    now = readings_now(rows, _points_now(rows), entry.model_id if entry else "")
    to_read = [r for r in rows if not not_chest_film(r)]
    others = [r for r in rows if not_chest_film(r)]
    refresh = current().worklist_refresh_s
    tab_read, tab_other = st.tabs([f"To read ({len(to_read)})", f"Not chest films ({len(others)})"])
    with tab_read:
        st.caption(f"{len(to_read)} of {len(cases)} case(s), most in need of a read first: not assessed, then PNEUMONIA "
                   "and then NORMAL, each by P(pneumonia), highest first. "
                   + (f"Refreshes every {refresh:g} s. " if refresh else "")
                   + "Select a row to open or remove it.")
        picked_read = _selectable(to_read, now, "wl_table")
    with tab_other:
        st.caption("Inputs the model refused as not chest films (photographs, CT, lateral views, other body parts): "
                   "no finding; check that the right image was sent.")
        picked_other = _selectable(others, now, "wl_table_other")
    selected = picked_read if picked_read is not None else picked_other
    case = next((r for r in rows if r["case_id"] == selected), None)
    if case is None:
        st.session_state.pop(CONFIRM, None)
        st.caption("Select a row (tick its box) to open or remove that case.")
        return
    c1, c2, c3 = st.columns([1.4, 1.7, 2], vertical_alignment="center")
    c3.caption(f"Selected: case {selected} ({_label(case)}).")
    if selected in now:
        st.warning(f"Case {selected}: {now[selected]} Its stored decision stays as it was given, for the audit.",
                   icon=":material/update:")
    # A link, not a button that switches pages from the server: the browser stops this fragment's refresh timer
    # before it leaves the page. A server-side switch let a refresh already on its way run after the Viewer had
    # drawn, for the Worklist's page, and the browser then cleared the Viewer (a blank page).
    c1.page_link("app_pages/viewer.py", label="Open in the Viewer", icon=":material/open_in_new:",
                 query_params={"case": str(selected)})
    if c2.button("Remove from the worklist", icon=":material/delete:", key="wl_remove",
                 help="A soft delete: the case, its image and its audit trail are kept."):
        st.session_state[CONFIRM] = selected
    if st.session_state.get(CONFIRM) == selected:
        _confirm_removal(case)
    else:
        st.session_state.pop(CONFIRM, None)  # another case was selected: its removal is asked afresh


def _selectable(rows: list[dict], now: dict[int, str], key: str) -> int | None:
    """The table of `rows`; the case id of its ticked row, or None. The key holds the ids shown, in order: any
    change of the rows gives a new, unticked table rather than a tick on whatever row moved under it."""
    if not rows:
        st.caption("No case here.")
        return None
    ids = [r["case_id"] for r in rows]
    event = st.dataframe(_table(rows, now), hide_index=True, width="stretch", on_select="rerun",
                         selection_mode="single-row", key=f"{key}_{hash(tuple(ids))}", column_config=_columns())
    ticked = event.selection.rows
    return ids[ticked[0]] if ticked and ticked[0] < len(ids) else None


def _label(case: dict) -> str:
    label = case["label"] or "not assessed"
    if case["subtype"] and case["subtype"] != "UNCERTAIN":
        label += f", {case['subtype'].lower()}"
    review = case["review"]
    if case["pneumonia_probability"] is not None:
        label += f", P {case['pneumonia_probability']:.3f}"
    return label + (f"; reviewed: {review['label']} by {review['reader']}" if review else "; not reviewed")


def _confirm_removal(case: dict) -> None:
    with st.container(border=True):
        st.warning(f"Remove case {case['case_id']} ({_label(case)}) from the worklist? It is hidden, not deleted: "
                   "its image, result and audit trail are kept.", icon=":material/delete:")
        c1, c2 = st.columns(2)
        if c1.button(f"Yes, remove case {case['case_id']}", type="primary", key="wl_remove_yes"):
            if not page.signed_in:
                st.error("Enter your name at the top of the sidebar first: every change is signed and audited.")
                return
            store.delete(case["case_id"], reader)
            st.session_state.pop(CONFIRM, None)
            st.session_state["worklist_message"] = f"Case {case['case_id']} removed from the worklist (audited)."
            st.rerun()
        if c2.button("Cancel", key="wl_remove_no"):
            st.session_state.pop(CONFIRM, None)
            st.rerun(scope="fragment")


def _study_date(value: str | None) -> str | None:
    """DICOM's YYYYMMDD as YYYY-MM-DD."""
    return f"{value[:4]}-{value[4:6]}-{value[6:8]}" if value and len(value) == 8 and value.isdigit() else value


worklist_table()

st.divider()
st.subheader("Local validation")
st.caption("Export reviewed cases as a labelled folder (NORMAL/, PNEUMONIA/ with the readers' labels), then evaluate "
           "it on the Dashboards page: the site gets its own figures, and may save its own operating point there. "
           "The readers saw the model's answer when they reviewed, and the figures say so.")
c1, c2 = st.columns([3, 1])
folder = c1.text_input("Export to folder", key="wl_export_dir", placeholder="site-validation",
                       help="A relative name goes under $CXR_HOME/exports; an absolute path is used as given.")
reviewed_only = c2.toggle("Reviewed cases only", value=True, key="wl_reviewed_only",
                          help="Local validation needs the readers' labels; off: unreviewed cases carry the model's "
                               "own answers, and no site figures are reported from such a folder.")
if st.button("Export", icon=":material/download:", key="wl_export"):

    try:
        if not page.signed_in:
            raise CXRError("Enter your name at the top of the sidebar first: every export is signed and audited.")
        if not folder.strip():
            raise CXRError("Enter the folder to export to.")
        target = current().layout.export_folder(folder)
        counts = store.export(target, reviewed_only, actor=reader)
        st.session_state["evaluation_path"] = str(target)  # pre-fills the Dashboards' evaluation field
        st.success(f"{export_sentence(counts, target)}. Evaluate it on the Dashboards page.")
    except CXRError as exc:
        st.error(f"Export failed. {exc}")

with st.expander("Audit trail"):
    events = store.audit()
    st.dataframe(pd.DataFrame([{"time (UTC)": e["time"][:19].replace("T", " "), "who": e["actor"],
                                "action": e["action"], "case": "" if e["case_id"] is None else str(e["case_id"]),
                                "what": describe_audit(e)} for e in reversed(events)]),
                 hide_index=True, width="stretch")
    st.caption(f"{len(events)} event(s), newest first. Append-only: no path in the code changes or deletes them.")
