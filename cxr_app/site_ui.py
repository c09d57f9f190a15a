"""The site's governed model in the app: who set it, activating or reverting it, and "Adapt to this site".

Pages only lay out; the rules are cxr_core.site's (the gate, the audit, the database) and train/site.py's (the
adaptation, run in its own process).
"""

from __future__ import annotations

import streamlit as st

from cxr_core.errors import CXRError
from cxr_core.formatting import ci
from cxr_core.model.registry import ModelEntry
from cxr_app import charts
from cxr_core.settings import current
from train.run_folder import RunFolder
from cxr_app.state import follow_site_model
from cxr_core.request import Request
from cxr_core.site.activation import activation_refusals, adaptation_evidence, local_comparison, standing_refusals
from cxr_core.site.models import ActiveChoice, active_choice, model_for
from train.launcher import list_runs, start_site_adaptation


def activation_panel(request: Request, entries: list[ModelEntry], key: str) -> None:
    """Make a model the site's active one, on evidence from the site's own films (a named reader, the paired
    comparison shown, then the confirmation), or revert the latest change. One confirmation after each change, and
    this session follows it at once."""

    store, reader = request.store, request.reader
    if store is None:
        st.warning("The case database is unavailable: the site's model cannot be changed.")
        return
    choice = active_choice(store)
    said = st.session_state.get(f"{key}_done")  # (the change it confirms, the words): kept while that change stands,
    if said and choice is not None and said[0] == choice.created:  # through the panel's own refreshes
        st.success(said[1], icon=":material/check_circle:")
    if choice is not None and choice.model_id:
        st.caption(f"The site's model: `{choice.model_id}`, set by {choice.author} on {choice.created[:10]}.")
    current_id = choice.model_id if choice is not None else None
    candidates = [e for e in entries if e.model_id != current_id]
    for e in candidates:  # what no local films can make up for is named, not silently left out
        if standing := standing_refusals(e.card):
            st.caption(f"`{e.model_id}` cannot become the site's model: " + " ".join(standing))
    candidates = [e for e in candidates if not standing_refusals(e.card)]
    if candidates:
        target = st.selectbox("Model for the whole site", [e.model_id for e in candidates], key=f"{key}_target")
        entry = next(e for e in candidates if e.model_id == target)
        evidence = _evidence(request, entry, key)
        refusals = activation_refusals(entry.card, request.policy, evidence)
        if refusals:
            st.error(f"{target} cannot become the site's model: " + " ".join(refusals), icon=":material/block:")
        else:
            c1, c2 = st.columns([3, 1])
            confirmed = c1.checkbox(f"I confirm: every user and workstation of this site will get {target} by "
                                    "default", key=f"{key}_confirm")
            if c2.button("Make the site's model", icon=":material/check_circle:", disabled=not (confirmed and request.signed_in),
                         key=f"{key}_activate", help=None if request.signed_in else "Type your name in the sidebar first."):
                try:
                    made = request.activate(target, evidence)
                    _changed(key, made, f"{target} is now the site's model, set by {reader} (audited; revertible). This "
                                  "session uses it now.")
                except CXRError as exc:
                    st.error(str(exc))
    if choice is not None and choice.model_id and st.button("Revert the site's model", key=f"{key}_revert",
                                                             icon=":material/undo:", disabled=not request.signed_in):
        try:
            back = request.revert()
            now = back.model_id or f"the default, {getattr(model_for(None, store, request.registry), 'model_id', 'none')}"
            _changed(key, back, f"Reverted by {reader}: the site's model is {now} again (audited). This session uses it now.")
        except CXRError as exc:
            st.error(str(exc))


def _evidence(request: Request, entry: ModelEntry, key: str) -> dict | None:
    """The evidence `entry` is judged on: a site-adapted model's own, else a comparison with the site's model on a
    labelled folder of local films, run on request and kept for this session only."""
    own = adaptation_evidence(entry.card)
    if own is not None:
        _show_comparison(own, f"{key}_own_roc")
        return own
    kept = st.session_state.setdefault(f"{key}_evidence", {})
    c1, c2 = st.columns([3, 1])
    folder = c1.text_input("Local films to compare on (NORMAL/ and PNEUMONIA/, none used in training)",
                           key=f"{key}_films", placeholder="/data/site-films or an exported reviewed worklist")
    c2.write("")
    if c2.button("Compare on local films", icon=":material/compare_arrows:", key=f"{key}_compare",
                 disabled=not folder.strip()):
        try:
            with st.spinner("Scoring both models on the local films..."):
                kept[entry.model_id] = local_comparison(request.store, request.registry, entry, folder.strip())
        except CXRError as exc:
            kept.pop(entry.model_id, None)
            st.error(str(exc))
    evidence = kept.get(entry.model_id)
    if evidence is not None:
        _show_comparison(evidence, f"{key}_roc")
    return evidence


def _show_comparison(evidence: dict, key: str) -> None:
    """The paired comparison before any confirmation: a table with CIs, the difference, and both ROCs."""
    import pandas as pd  # lazy: heavy

    st.markdown(f"**{evidence['n']} local films** ({evidence['n_positive']} pneumonia, {evidence['n_negative']} "
                f"normal; {evidence.get('source')}), each model at the point it decides with:")
    roles = [r for r in ("current", "candidate") if evidence.get(r)]
    rows = [{"": role, "model": evidence[role].get("model_id"),
             "AUC": f"{evidence[role]['auc']:.3f} {ci(evidence[role]['auc_ci95'])}",
             "threshold": f"{evidence[role]['threshold']:.3f}",
             "sensitivity": f"{evidence[role]['sensitivity']:.3f} {ci(evidence[role]['sensitivity_ci95'])}",
             "specificity": f"{evidence[role]['specificity']:.3f} {ci(evidence[role]['specificity_ci95'])}"}
            for role in roles]
    st.dataframe(pd.DataFrame(rows), hide_index=True)
    difference = evidence.get("difference") or {}
    if difference:
        st.caption(f"Paired AUC difference (candidate - current, same films): {difference['auc']:+.3f} "
                   f"{ci(difference['auc_ci95'])}.")
    if all("roc" in evidence[r] for r in roles):
        st.plotly_chart(charts.roc({f"{r} ({evidence[r].get('model_id')})": (evidence[r]["roc"], evidence[r]["auc"])
                                    for r in roles}), key=key)


def _changed(key: str, change: ActiveChoice, message: str) -> None:
    """After a change of the site's model: this session follows it (its own pick dropped), the confirmation is said
    for as long as this change is the site's latest (the panel refreshes itself every few seconds), and the whole
    page reruns, so that the sidebar and every panel agree."""
    follow_site_model()
    for stale in (f"{key}_confirm", f"{key}_evidence"):
        st.session_state.pop(stale, None)
    st.session_state[f"{key}_done"] = (change.created, message)
    st.rerun()


def adaptation_section(request: Request) -> None:
    """ "Adapt to this site": the source, Start, then the live curves and the parent-vs-adapted comparison."""

    st.subheader("Adapt to this site")
    st.caption("Fine-tune the model in use on this site's own labelled films, cross-fitted: each film is scored by "
               "a model fine-tuned without its patient, and the parent on the same films. The model is kept in the "
               "case database and used only once a named reader activates it past the gate.")
    entry = request.entry
    if entry is None:
        return
    source = st.radio("Films", ["A labelled folder (NORMAL/ and PNEUMONIA/)", "The worklist's reviewed cases"],
                      key="adapt_source", horizontal=True)
    from_reviews = source.startswith("The worklist")
    folder = "" if from_reviews else st.text_input("Labelled folder", key="adapt_folder",
                                                   placeholder="/data/site-films (NORMAL/ and PNEUMONIA/ inside)")
    if from_reviews:
        st.caption("Labels come from readers' reviews: the readers saw the model's answer when they labelled.")
    if st.button("Start the adaptation", icon=":material/play_arrow:", key="adapt_start", disabled=not request.signed_in,
                  help=None if request.signed_in else "Type your name in the sidebar first."):
        try:
            st.session_state["adapt_run"] = str(start_site_adaptation(entry.model_id, folder, from_reviews, request.reader))
            st.success("Started: the films are checked, then one model per fold and the final model train "
                       "(a few minutes).")
        except CXRError as exc:
            st.error(str(exc))
    _live_adaptation(request)


@st.fragment(run_every=3)
def _live_adaptation(request: Request) -> None:
    runs = list_runs(current().layout.site_runs)
    followed = st.session_state.get("adapt_run")
    run = next((r for r in runs if str(r.run_dir) == followed), runs[0] if runs else None)
    if run is None:
        return
    status = run.status
    state = status.get("state", "?")
    st.markdown(f"**Adaptation {run.name}: {state}**")
    if state == "failed":
        st.error(status.get("message") or "It stopped.")
        return
    if status.get("epochs") and state == "training":
        fold = status.get("fold")
        where = "the final model" if fold == "final" else f"fold {fold} of {status.get('folds')}"
        auc = status.get("val_auc")
        st.progress(min(1.0, status["epoch"] / status["epochs"]),
                    text=f"{where}: epoch {status['epoch']} of {status['epochs']}"
                         + ("" if auc is None else f", AUC on the fold's own held-out patients {auc:.3f}"))
    history = RunFolder(run.run_dir).read_history()
    if history:
        c1, c2 = st.columns(2)
        c1.plotly_chart(charts.fold_curves(history, "loss", "Training loss, per fold"), key="adapt_loss")
        c2.plotly_chart(charts.fold_curves(history, "val_auc", "AUC on each fold's held-out patients"),
                        key="adapt_auc")
    result = status.get("result")
    if state != "finished" or not result:
        return
    _comparison(request, result)


def _comparison(request: Request, result: dict) -> None:
    """A finished adaptation: how optimistic its threshold is, then the governed panel with its paired evidence."""
    try:
        entry = model_for(result["model_id"], request.store, request.registry)
    except CXRError as exc:
        st.error(str(exc))
        return
    check = entry.card.site_adaptation.get("threshold_cross_check") or {}
    st.caption("The adapted model's scores are out-of-fold: each film scored by a model fine-tuned without its "
               f"patient. Its threshold rule ({check.get('rule', 'out-of-fold sensitivity')}) judged on folds it did "
               f"not see: sensitivity {check.get('sensitivity', float('nan')):.3f}, specificity "
               f"{check.get('specificity', float('nan')):.3f}.")
    activation_panel(request, [entry], key="adapted")
