"""The Dashboards' site operating point: propose the slider's threshold on a saved local evaluation; the core
(cxr_core.validation.site_point) checks the deployment's rules, and a named reader confirms. Kept in the case database,
never in the model card."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import numpy as np
import streamlit as st

from cxr_core.validation import metrics
from cxr_core.errors import CXRError
from cxr_core.formatting import ci
from cxr_core.request import Request
from cxr_core.validation.site_point import revert_site_point, set_site_point

MESSAGE = "site_point_message"


def site_operating_point_form(request: Request, yb: np.ndarray, p: np.ndarray, threshold: float,
                              summary: dict[str, Any], scores: Path) -> None:
    store, entry, reader = request.store, request.entry, request.reader
    assert entry is not None
    with st.container(border=True):
        st.markdown("**Site operating point**")
        if message := st.session_state.pop(MESSAGE, None):
            st.success(message, icon=":material/check:")
        if store is None:
            st.caption("Needs the case database, which is unavailable (see the message above).")
            return
        policy = request.policy
        ev = metrics.operating_point_evidence(yb, p, threshold)
        st.caption(f"At {threshold:.3f} on this evaluation (n = {ev['n']}: {ev['n_positive']} pneumonia, "
                   f"{ev['n_negative']} normal): sensitivity {ev['sensitivity']:.3f} {ci(ev['sensitivity_ci95'])}, "
                   f"specificity {ev['specificity']:.3f} {ci(ev['specificity_ci95'])} (Wilson 95 % CIs). A site point "
                   "decides every new result of this model for every user. It is accepted only from a local evaluation "
                   f"with at least {policy.min_per_class} images of each class, and where the lower 95 % bound of "
                   f"sensitivity stays at or above {policy.sensitivity_floor:.2f}.")
        if (summary.get("overlap") or {}).get("warning"):
            st.warning("This folder overlaps the model's training data: a threshold chosen on it is not a site's "
                       "independent operating point.", icon=":material/warning:")
        current_point = store.site_threshold(entry.model_id)
        confirmed = st.checkbox(f"I, {reader if request.signed_in else '(enter your name in the sidebar)'}, set {threshold:.3f} as the "
                                "operating point for every user of this model", key="site_confirm")
        c1, c2 = st.columns(2)
        if c1.button(f"Save {threshold:.3f} as the site's operating point", icon=":material/save:", key="site_save",
                     disabled=not confirmed):
            _apply(lambda: set_site_point(store, entry.card, threshold, scores, reader, policy),
                   f"Site operating point saved: {threshold:.3f}.")
        if current_point and c2.button(f"Return to the model's threshold ({entry.card.threshold:.3f})",
                                       icon=":material/undo:", key="site_revert"):
            _apply(lambda: revert_site_point(store, entry.card, reader), "The model's own threshold decides again.")


def _apply(action: Callable[[], object], done: str) -> None:
    try:
        action()
    except CXRError as exc:
        st.error(str(exc), icon=":material/block:")
        return
    st.session_state[MESSAGE] = done
    st.session_state.pop("site_confirm", None)
    st.rerun()
