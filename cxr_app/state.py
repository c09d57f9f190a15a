"""Model and registry state for the app: one model load per process, a per-session choice."""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from cxr_core.errors import CXRError
from cxr_core.registry import ModelEntry, Registry

SESSION_MODEL = "model_id"


def registry() -> Registry:
    return Registry()


@st.cache_resource(show_spinner="Loading the model (once per server)...", max_entries=2)
def _load_predictor(model_dir: str, stamp: float):
    """Shared by every session: the model is loaded once per process (per model version)."""
    from cxr_core.predict import Predictor

    predictor = Predictor(model_dir)
    import sys

    import numpy as np

    print(f"cxr: model loaded ({predictor.card.get('model_id')})", file=sys.stderr, flush=True)  # no patient data

    predictor.forward(np.zeros((1, predictor.image_size, predictor.image_size, 1), np.float32))  # warm up
    return predictor


def predictor_for(entry: ModelEntry):
    stamp = (entry.path / "model.keras").stat().st_mtime
    return _load_predictor(str(entry.path), stamp)


@st.cache_resource(show_spinner=False, max_entries=4)
def _open_store(url: str | None, home: str):
    """One case store (engine and connection pool) per database per process, shared by every session."""
    from cxr_core.cases import CaseStore

    return CaseStore.open(url)


def case_store():
    """The worklist's case store, or None with the reason shown (results are then not kept)."""
    from cxr_core.casedb import database_url
    from cxr_core.paths import app_home

    try:
        return _open_store(database_url(), str(app_home()))
    except CXRError as exc:  # an unreachable or damaged database must not take the Viewer down
        st.error(f"{exc} Results are shown but not kept: fix CXR_DATABASE_URL or $CXR_HOME and reload.",
                 icon=":material/error:")
        return None


READER = "reader_name"  # not a widget key: Streamlit drops a widget's state when another page is shown


def reader_name() -> str:
    """The reader's name for reviews and the audit trail: from the trusted reverse-proxy header the deployment
    names (CXR_READER_HEADER), else asked once per browser session in the sidebar and kept across pages."""
    from cxr_core.settings import current

    header = current().reader_header
    if header:
        signed_in = (st.context.headers.get(header) or "").strip()
        st.sidebar.caption(f"Reader: **{signed_in}** (signed in)" if signed_in else
                           f"No reader: the sign-in header {header} is missing, so changes cannot be saved.")
        return signed_in

    def keep() -> None:
        st.session_state[READER] = st.session_state["reader_input"].strip()

    st.session_state.setdefault(READER, "")
    st.sidebar.text_input("Your name (reviews and audit)", value=st.session_state[READER], key="reader_input",
                          on_change=keep, placeholder="e.g. Dr A. Smith")
    return st.session_state[READER]


def threshold_in_use(entry: ModelEntry, store) -> dict | None:
    """Say in the sidebar which threshold decides: the site's operating point or the model's; the site point."""
    point = store.site_threshold(entry.model_id) if store is not None else None
    show_threshold(entry, point)
    return point


def show_threshold(entry: ModelEntry, point: dict | None) -> None:
    """The sidebar line for a site point already read (`None`: the model's own threshold decides)."""
    with st.sidebar:
        if point:
            ev = point["evidence"]
            st.caption(f"Threshold in use: **{point['threshold']:.3f}, the site's operating point** (n = {ev.get('n')}, "
                       f"set by {point['author']} on {point['created'][:10]}). Model threshold "
                       f"{entry.card.get('threshold', 0.5):.3f}.")
        else:
            st.caption(f"Threshold in use: {entry.card.get('threshold', 0.5):.3f}, the model's own.")


def current_entry() -> ModelEntry | None:
    """This session's model: the one picked in the sidebar, else the registry's active model."""
    reg = registry()
    chosen = st.session_state.get(SESSION_MODEL)
    if chosen:
        try:
            return reg.get(chosen)
        except CXRError:
            st.session_state.pop(SESSION_MODEL, None)
    try:
        return reg.active()
    except CXRError as exc:  # a damaged ACTIVE pointer: say so, and let the user pick a model
        st.error(str(exc), icon=":material/error:")
        return None


def sidebar_model_panel() -> ModelEntry | None:
    """The model in use, always visible: name, version, internal-validation figures; a switcher."""
    reg = registry()
    entries = reg.list()
    with st.sidebar:
        st.markdown("### Model in use")
        if not entries:
            st.warning(f"No model is registered in `{reg.root}`. Train one on the Training page or with `python -m train`.")
            return None
        ids = [e.model_id for e in entries]
        current = current_entry()
        index = ids.index(current.model_id) if current and current.model_id in ids else 0
        active = current.model_id if current and current.model_id == _active_or_none(reg) else None
        picked = st.selectbox("Model", ids, index=index, key="model_picker",
                              format_func=lambda i: f"{reg.get(i).display_name}{' (active)' if i == active else ''}")
        st.session_state[SESSION_MODEL] = picked
        entry = reg.get(picked)
        iv = entry.card.get("internal_validation", {})
        b, t = iv.get("binary", {}), iv.get("three_class", {})
        st.caption(f"`{entry.model_id}`")
        c1, c2 = st.columns(2)
        c1.metric("Val. AUC", f"{b.get('auc', float('nan')):.3f}")
        c2.metric("Val. accuracy", f"{b.get('accuracy', float('nan')):.3f}")
        c1.metric("Sensitivity", f"{b.get('sensitivity', float('nan')):.3f}")
        c2.metric("Specificity", f"{b.get('specificity', float('nan')):.3f}")
        st.caption(f"3-class accuracy {t.get('accuracy', float('nan')):.3f}. Threshold {entry.card.get('threshold', 0.5):.3f}. "
                   f"{entry.card.get('internal_validation_kind', 'Internal validation: patient-grouped split of the training data')} "
                   "(flatters: same hospital and period as training).")
        st.info("Research decision support only: not a diagnosis. Pediatric frontal chest X-rays.", icon=":material/info:")
        return entry


def _active_or_none(reg: Registry) -> str | None:
    try:
        return reg.active_id()
    except CXRError:
        return None


def data_dir_default() -> str:
    from cxr_core.settings import current

    return current().data_dir


def resolve_data_dir(text: str) -> Path:
    """A typed dataset path: resolved, and it must be an existing folder (raises CXRError)."""
    if not text.strip():
        raise CXRError("Enter the path of a folder holding NORMAL/ and PNEUMONIA/.")
    path = Path(text.strip()).expanduser().resolve()
    if not path.is_dir():
        raise CXRError(f"{str(path)!r} is not an existing folder.")
    return path
