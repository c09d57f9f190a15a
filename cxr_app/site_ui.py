"""The site's governed model in the app: who set it, activating or reverting it, and "Adapt to this site".

Pages only lay out; the rules are cxr_core.site's (the gate, the audit, the database) and train/site.py's (the
adaptation, run in its own process).
"""

from __future__ import annotations

import streamlit as st

from cxr_core.errors import CXRError
from cxr_core.formatting import ci
from cxr_core.model.registry import ModelEntry, Registry
from cxr_app import charts
from cxr_core.settings import current
from train.run_folder import RunFolder
from cxr_core.site.models import activate_model, activation_refusals, active_choice, find_entry, revert_active_model
from train.launcher import list_runs, start_site_adaptation


def provenance(entry: ModelEntry) -> str | None:
    """One line for a site-adapted model: its parent, films, date and reader (None for any other model)."""
    site = entry.card.site_adaptation
    if not site:
        return None
    counts = site.get("counts") or {}
    n = counts.get("kept", "?")
    return (f"Site-adapted from `{site.get('parent_model_id')}` on {n} of this site's labelled films, "
            f"{str(site.get('created', ''))[:10]}, by {site.get('reader')}.")


def activation_panel(store, entries: list[ModelEntry], reader: str, key: str) -> None:
    """Make a model the site's active one (named reader, confirmation, the gate), or revert the latest change."""

    if store is None:
        st.warning("The case database is unavailable: the site's model cannot be changed.")
        return
    refusals = {e.model_id: activation_refusals(e.card, current().site_policy) for e in entries}
    candidates = [e for e in entries if not refusals[e.model_id]]
    choice = active_choice(store)
    if choice is not None and choice.model_id:
        st.caption(f"The site's model: `{choice.model_id}`, set by {choice.author} on {choice.created[:10]}.")
    for model_id, reasons in refusals.items():  # a run below the gate is named, with the gate: not silently left out
        if reasons:
            st.caption(f"`{model_id}` cannot become the site's model: " + " ".join(reasons))
    if not candidates:
        st.caption("No registered model passes the gate for the site's model (internal AUC at least 0.90; a "
                   "site-adapted model also its local-validation rules).")
    else:
        c1, c2 = st.columns([3, 1])
        target = c1.selectbox("Model for the whole site", [e.model_id for e in candidates], key=f"{key}_target")
        confirmed = st.checkbox(f"I confirm: every user and workstation of this site will get {target} by default",
                                key=f"{key}_confirm")
        if c2.button("Make the site's model", icon=":material/check_circle:", disabled=not (confirmed and reader),
                     key=f"{key}_activate", help=None if reader else "Type your name in the sidebar first."):
            try:
                activate_model(store, Registry(), target, reader, current().site_policy)
                st.success(f"{target} is now the site's model (audited; revertible).")
            except CXRError as exc:
                st.error(str(exc))
    if choice is not None and choice.model_id and st.button("Revert the site's model", key=f"{key}_revert",
                                                             icon=":material/undo:", disabled=not reader):
        try:
            back = revert_active_model(store, Registry(), reader)
            st.success(f"The site's model is {back.model_id or 'the shipped default'} again (audited).")
        except CXRError as exc:
            st.error(str(exc))


def adaptation_section(store, entry: ModelEntry | None, reader: str) -> None:
    """ "Adapt to this site": the source, Start, then the live curves and the parent-vs-adapted comparison."""

    st.subheader("Adapt to this site")
    st.caption("Fine-tune the model in use on this site's own labelled films, cross-fitted: each film is scored by "
               "a model fine-tuned without its patient, and the parent on the same films. The model is kept in the "
               "case database and used only once a named reader activates it past the gate.")
    if entry is None:
        return
    source = st.radio("Films", ["A labelled folder (NORMAL/ and PNEUMONIA/)", "The worklist's reviewed cases"],
                      key="adapt_source", horizontal=True)
    from_reviews = source.startswith("The worklist")
    folder = "" if from_reviews else st.text_input("Labelled folder", key="adapt_folder",
                                                   placeholder="/data/site-films (NORMAL/ and PNEUMONIA/ inside)")
    if from_reviews:
        st.caption("Labels come from readers' reviews: the readers saw the model's answer when they labelled.")
    if st.button("Start the adaptation", icon=":material/play_arrow:", key="adapt_start", disabled=not reader,
                  help=None if reader else "Type your name in the sidebar first."):
        try:
            st.session_state["adapt_run"] = str(start_site_adaptation(entry.model_id, folder, from_reviews, reader))
            st.success("Started: the films are checked, then one model per fold and the final model train "
                       "(a few minutes).")
        except CXRError as exc:
            st.error(str(exc))
    _live_adaptation(store, reader)


@st.fragment(run_every=3)
def _live_adaptation(store, reader: str) -> None:
    runs = list_runs(current().site_runs)
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
    _comparison(store, result, reader)


def _comparison(store, result: dict, reader: str) -> None:
    import pandas as pd  # lazy: heavy

    try:
        entry = find_entry(store, Registry(), result["model_id"])
    except CXRError as exc:
        st.error(str(exc))
        return
    site = entry.card.site_adaptation
    lv, check = site["local_validation"], site.get("threshold_cross_check") or {}
    st.markdown(f"**Parent and adapted model on the same {lv['n']} site films** ({lv['n_positive']} pneumonia, "
                f"{lv['n_negative']} normal), each at its own threshold; the adapted model's scores are out-of-fold "
                "(each film scored by a model fine-tuned without its patient):")
    rows = [{"model": name, "AUC": f"{m['auc']:.3f} {ci(m['auc_ci95'])}",
             "sensitivity": f"{m['sensitivity']:.3f} {ci(m['sensitivity_ci95'])}",
             "specificity": f"{m['specificity']:.3f} {ci(m['specificity_ci95'])}", "threshold": f"{m['threshold']:.3f}"}
            for name, m in (("parent", lv["parent"]), ("adapted", lv["adapted"]))]
    st.dataframe(pd.DataFrame(rows), hide_index=True)
    difference = lv.get("difference") or {}
    if difference:
        st.caption(f"Paired AUC difference (adapted - parent): {difference['auc']:+.3f} {ci(difference['auc_ci95'])}. "
                   f"The threshold rule ({check.get('rule', 'out-of-fold sensitivity')}) judged on folds it did not "
                   f"see: sensitivity {check.get('sensitivity', float('nan')):.3f}, specificity "
                   f"{check.get('specificity', float('nan')):.3f}.")
    st.plotly_chart(charts.roc({name: (lv[name]["roc"], lv[name]["auc"]) for name in ("parent", "adapted")}),
                    key="adapt_roc")
    refusals = result.get("gate_refusals") or []
    if refusals:
        st.warning("It does not pass the gate, so it cannot become the site's model: " + " ".join(refusals))
        return
    st.success("It passes the gate.")
    activation_panel(store, [entry], reader, key="adapted")
