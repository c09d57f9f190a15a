"""The Dashboards' site operating point: save the slider's threshold, chosen on the site's own evaluation,
with its evidence. Stored in the case database (cxr_core.cases), never in the model card."""

from __future__ import annotations

from typing import Any

import numpy as np
import streamlit as st

from cxr_core import metrics
from cxr_core.errors import CXRError

MESSAGE = "site_point_message"


def _ci(v: list[float]) -> str:
    return f"[{v[0]:.3f}, {v[1]:.3f}]"


def site_operating_point_form(store: Any, entry: Any, yb: np.ndarray, p: np.ndarray, threshold: float,
                              summary: dict[str, Any], reader: str) -> None:
    with st.container(border=True):
        st.markdown("**Site operating point**")
        if message := st.session_state.pop(MESSAGE, None):
            st.success(message, icon=":material/check:")
        if store is None:
            st.caption("Needs the case database, which is unavailable (see the message above).")
            return
        ev = metrics.operating_point_evidence(yb, p, threshold)
        st.caption(f"At {threshold:.3f} on this evaluation (n = {ev['n']}: {ev['n_positive']} pneumonia, "
                   f"{ev['n_negative']} normal): sensitivity {ev['sensitivity']:.3f} {_ci(ev['sensitivity_ci95'])}, "
                   f"specificity {ev['specificity']:.3f} {_ci(ev['specificity_ci95'])} (Wilson 95 % CIs). A saved site "
                   "point decides every new result for this model; the Viewer, PDF and exports say so. It is kept in "
                   "the case database, never in the model card.")
        if (summary.get("overlap") or {}).get("warning"):
            st.warning("This folder overlaps the model's training data: a threshold chosen on it is not a site's "
                       "independent operating point.", icon=":material/warning:")
        current = store.site_threshold(entry.model_id)
        c1, c2 = st.columns(2)
        if c1.button(f"Save {threshold:.3f} as the site's operating point", icon=":material/save:", key="site_save"):
            _save(store, entry.model_id, threshold, reader, {**ev, "data": summary.get("data"),
                                                               "data_fingerprint": summary.get("data_fingerprint"),
                                                               "evaluated": summary.get("evaluated")})
        if current and c2.button(f"Return to the model's threshold ({entry.card.get('threshold', 0.5):.3f})",
                                 icon=":material/undo:", key="site_revert"):
            _save(store, entry.model_id, None, reader, {"reverted_from": current["threshold"]})


def _save(store: Any, model_id: str, threshold: float | None, reader: str, evidence: dict[str, Any]) -> None:
    if not reader:
        st.error("Enter your name in the sidebar first: a site operating point records its author.")
        return
    try:
        store.set_site_threshold(model_id, threshold, reader, evidence)
    except CXRError as exc:
        st.error(str(exc))
        return
    st.session_state[MESSAGE] = ("Site operating point saved: " + f"{threshold:.3f}." if threshold is not None
                                 else "The model's own threshold decides again.")
    st.rerun()
