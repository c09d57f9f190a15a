"""Model and registry state for the app: one model load per process, a per-session choice."""

from __future__ import annotations

import gc
from pathlib import Path

import streamlit as st

from cxr_core.errors import CXRError
from cxr_core.model.registry import ModelEntry, Registry
from cxr_core.cases.db import database_url
from cxr_core.cases.store import CaseStore
from cxr_core.model.operating_point import OperatingPoint
from cxr_core.model.predict import Predictor
from cxr_core.safety.intended_use import BANNER
from cxr_core.settings import current
from cxr_core.request import Request
from cxr_core.site.models import sync
from cxr_core.validation.external import external_sentence
from cxr_core.validation.figures import own_figures
from cxr_core.validation.site_point import SiteFigures
import numpy as np
import sys

SESSION_MODEL = "model_id"
SITE_MARK = " (the site's model)"


def registry() -> Registry:
    return Registry()


@st.cache_resource(show_spinner="Loading the model (once per server)...", max_entries=2)
def _load_predictor(model_dir: str, stamp: float):
    """Shared by every session: the model is loaded once per process (per model version)."""

    predictor = Predictor(model_dir)

    print(f"cxr: model loaded ({predictor.card.model_id})", file=sys.stderr, flush=True)  # no patient data

    predictor.forward(np.zeros((1, predictor.image_size, predictor.image_size, 1), np.float32))  # warm up
    _freeze_heap()
    return predictor


def _freeze_heap() -> None:
    """Take what is loaded now (the libraries, the model) out of the garbage collector's walk. Streamlit collects
    every generation after each rerun (`runner.postScriptGC`, and Keras's `clear_session`, which it calls whenever
    Keras is loaded). With TensorFlow's heap in the walk, a Viewer rerun took 0.85 s of the server's CPU; without
    it, 0.07 s (`python bench/app.py`, 2 cores). Unfreezing first lets a model the cache has dropped be collected."""
    gc.unfreeze()
    gc.collect()
    gc.freeze()


def predictor_for(entry: ModelEntry):
    stamp = entry.folder.model_file.stat().st_mtime
    return _load_predictor(str(entry.path), stamp)


@st.cache_resource(show_spinner=False, max_entries=4)
def _open_store(url: str | None, home: str):
    """One case store (engine and connection pool) per database per process, shared by every session."""

    return CaseStore.open(url)


def case_store():
    """The worklist's case store, or None with the reason shown (results are then not kept)."""

    try:
        return _open_store(database_url(), str(current().home))
    except CXRError as exc:  # an unreachable or damaged database must not take the Viewer down
        st.error(f"{exc} Results are shown but not kept: fix CXR_DATABASE_URL or $CXR_HOME and reload.",
                 icon=":material/error:")
        return None

READER = "reader_name"  # not a widget key: Streamlit drops a widget's state when another page is shown
READER_PARAM = "reader"  # the address's query parameter that keeps the name through a reload


def reader_name() -> str:
    """The reader's name for reviews and the audit trail: from the trusted reverse-proxy header the deployment
    names (CXR_READER_HEADER), else asked once per browser session in the sidebar and kept across pages and, in
    the address (?reader=), through a reload."""

    header = current().reader_header
    if header:
        signed_in = (st.context.headers.get(header) or "").strip()
        st.sidebar.caption(f"Reader: **{signed_in}** (signed in)" if signed_in else
                           f"No reader: the sign-in header {header} is missing, so changes cannot be saved.")
        return signed_in

    def keep() -> None:  # may run after a page switch, when the box's own state is already gone
        typed = st.session_state.get("reader_input")
        if typed is not None:
            st.session_state[READER] = typed.strip()

    if READER not in st.session_state:  # a new session (a reload) takes the name the address carries
        st.session_state[READER] = str(st.query_params.get(READER_PARAM) or "").strip()
    st.sidebar.text_input("Your name (reviews and audit)", value=st.session_state[READER], key="reader_input",
                          on_change=keep, placeholder="e.g. Dr A. Smith")
    if st.session_state[READER]:
        st.query_params[READER_PARAM] = st.session_state[READER]  # kept for this browser tab's session
    else:
        st.query_params.pop(READER_PARAM, None)
    return st.session_state[READER]


def page_preamble(without_model: str | None = None, needs_store: bool = False) -> Request:
    """The request every page starts from (cxr_core.request.Request), in one order: the reader's name first in the
    sidebar, the case store, the model panel and the threshold in use; each resolved once for this rerun, then
    passed to whatever shows or decides with it. `without_model`: what the page cannot do without a model
    ("nothing can be analysed"); said, and the page stops. `needs_store`: the page stops without the case store
    (its reason is already shown)."""
    reader = reader_name()
    store = case_store()
    request = sidebar_model_panel(store, reader)
    if request.entry is not None:
        sidebar_figures(request.entry, request.site)
        point_in_use(request.entry, request.point)
    if request.entry is None and without_model:
        st.warning(f"No model is available, so {without_model}. Train one on the Training page.")
        st.stop()
    if store is None and needs_store:
        st.stop()
    return request


def point_in_use(entry: ModelEntry, point: OperatingPoint) -> None:
    """Say in the sidebar which operating point decides for this request: the site's governed point, or the
    model's own threshold."""

    with st.sidebar:
        if point.source == "site":
            ev = point.evidence_dict
            st.caption(f"Threshold in use: **{point.threshold:.3f}, the site's operating point** (set by {point.set_by} "
                       f"on {(point.set_on or '')[:10]} from a local evaluation of n = {ev.get('n')}). The model's own: "
                       f"{entry.card.threshold:.3f}.")
        else:
            st.caption(f"Threshold in use: {point.threshold:.3f}, the model's own.")
    return point


def provenance(entry: ModelEntry) -> str | None:
    """One line for a site-adapted model: its parent, films, date and reader (None for any other model)."""
    adaptation = entry.card.site_adaptation
    if not adaptation:
        return None
    counts = adaptation.get("counts") or {}
    return (f"Site-adapted from `{adaptation.get('parent_model_id')}` on {counts.get('kept', '?')} of this site's "
            f"labelled films, {str(adaptation.get('created', ''))[:10]}, by {adaptation.get('reader')}.")


def follow_site_model() -> None:
    """After this reader changed the site's model: drop the session's own pick, so the session uses the site's
    model from the next run on, as every other session does."""
    st.session_state.pop(SESSION_MODEL, None)
    st.session_state.pop("model_picker", None)


def _request(store: CaseStore | None, reader: str) -> Request:
    """This session's request: its model is the one picked in the sidebar (this run's pick, else the session's
    last), else the site's model (its governed choice, read on every rerun so a change on any workstation applies
    at once; else the registry's default). A pick no longer registered falls back to the site's model; a site model
    that cannot be had is said on the page, and the request has no model."""
    picked = st.session_state.get("model_picker") or st.session_state.get(SESSION_MODEL)
    try:
        return Request.resolve(store, picked, reader)
    except CXRError as exc:
        if picked:
            follow_site_model()
            return _request(store, reader)
        st.error(str(exc), icon=":material/error:")
        return Request.without_model(store, reader)


def sidebar_model_panel(store: CaseStore | None, reader: str) -> Request:
    """The model in use, always visible: name, version, a switcher (the site's model marked); returns the request
    it resolved, whose figures the sidebar shows next."""
    try:
        sync(store)  # the models kept in the case database, unpacked here once
    except CXRError as exc:
        st.sidebar.error(str(exc), icon=":material/error:")
    request = _request(store, reader)
    reg = request.registry
    entries = reg.list()
    with st.sidebar:
        st.markdown("### Model in use")
        if not entries:
            st.warning(f"No model is registered in `{reg.root}`. Train one on the Training page or with `python -m train`.")
            return Request.without_model(store, reader)
        in_use = request.entry
        experimental = st.checkbox("Show experimental models", key="show_experimental",
                                   help="Models below their validation gate: for research, never for patients.")
        entries = [e for e in entries if e.passed_gate or experimental or (in_use and e.model_id == in_use.model_id)]
        if not entries:
            st.warning("Every registered model failed its validation gate: tick 'Show experimental models' to see them.")
            return Request.without_model(store, reader)
        names = {e.model_id: e.display_name for e in entries}
        ids = list(names)
        index = ids.index(in_use.model_id) if in_use and in_use.model_id in ids else 0
        active = request.site_model.model_id if request.site_model else None
        picked = st.selectbox("Model", ids, index=index, key="model_picker",
                              format_func=lambda i: names[i] + (SITE_MARK if i == active else ""))
        st.session_state[SESSION_MODEL] = picked
        if in_use is None or picked != in_use.model_id:  # the site's model could not be had: the first listed
            try:
                request = Request.resolve(store, picked, reader)
            except CXRError as exc:
                st.error(str(exc), icon=":material/error:")
                return Request.without_model(store, reader)
        entry = request.entry
        st.caption(f"`{entry.model_id}`")
        if active and not request.is_site_model:
            st.warning(f"Not the site's model (`{active}`): for comparison in this session only.",
                       icon=":material/compare_arrows:")
        if line := provenance(entry):
            st.caption(line)
        if not entry.passed_gate:
            st.error("Experimental: this model failed its validation gate. Not for patient care.", icon=":material/science:")
        return request


def sidebar_figures(entry: ModelEntry, figures: SiteFigures | None) -> None:
    """Below the picker, each labelled with where it comes from: the site's figures (or why there are none), the
    external validation, the model's own figures; then the intended-use banner."""
    with st.sidebar:
        _local_figures(entry, figures)
        _external_figures(entry)
        _internal_figures(entry)
        st.info(BANNER, icon=":material/info:")


def _local_figures(entry: ModelEntry, figures: SiteFigures | None) -> None:
    """The site's figures first, with where their labels came from; or why there are none, with a pointer to
    local validation."""
    if figures is not None and figures.reportable:
        st.markdown(f"**At this site** (local evaluation, n = {figures.n})")
        st.caption(figures.sentence().removeprefix("At this site "))
        return
    if entry.card.site_adaptation:  # its own figures below are this site's: out-of-fold local validation
        return
    if figures is None:
        st.warning("No local evaluation at this site yet: the figures below are internal and flatter what a new site "
                   "sees. Validate locally before relying on them.", icon=":material/warning:")
    else:
        st.warning(f"{figures.sentence()} The figures below are internal and flatter what a new site sees.",
                   icon=":material/warning:")
    st.page_link("app_pages/worklist.py", label="Local validation: export reviewed cases", icon=":material/fact_check:")


def _external_figures(entry: ModelEntry) -> None:
    """The model's figures on a site it never trained on (validate-external), where its card has them."""
    if entry.card.external_validation:
        st.markdown(f"**{entry.card.external_label}**")
        st.caption(external_sentence(entry.card.external_validation))


def _internal_figures(entry: ModelEntry) -> None:
    """The model's own figures, labelled for what they are (cxr_core.validation.figures: the PDF's words too)."""
    own = own_figures(entry.card)
    st.markdown(f"**{own.heading}**")
    st.caption(own.sentence)


def data_dir_default() -> str:
    return current().data_dir


def resolve_data_dir(text: str) -> Path:
    """A typed dataset path: resolved, and it must be an existing folder (raises CXRError)."""
    if not text.strip():
        raise CXRError("Enter the path of a folder holding NORMAL/ and PNEUMONIA/.")
    path = Path(text.strip()).expanduser().resolve()
    if not path.is_dir():
        raise CXRError(f"{str(path)!r} is not an existing folder.")
    return path
