"""Dashboards: test-set metrics of the model in use, from its saved per-image scores."""


import pandas as pd
import streamlit as st

from cxr_app import charts
from cxr_app.robustness import robustness_view
from cxr_app.site_point import site_operating_point_form
from cxr_app.state import data_dir_default, page_preamble, predictor_for, registry, resolve_data_dir
from cxr_core.site.models import model_for
from cxr_core import CLASSES
from cxr_core.validation import metrics
from cxr_core.errors import CXRError
from cxr_core.formatting import ci
from cxr_core.validation.external import external_sentence
from cxr_core.validation.evaluation import EvaluationFolder, evaluate_folder, read_scores, saved_evaluations
from cxr_core.model.gradcam import overlay

@st.cache_data(max_entries=64, show_spinner=False)
def _cam_picture(model_dir: str, model_id: str, path: str):
    """(Grad-CAM overlay, raw P(pneumonia)) of one evaluated image; cached so slider moves never re-predict."""
    pred = predictor_for(model_for(model_dir, None)).predict(path, name=path)
    return None if pred.error else (overlay(pred.image.pixels, pred.heatmap), pred.raw_pneumonia_probability)


st.title("Dashboards")
page = page_preamble(without_model="there is nothing to show")
store, entry, point = page.store, page.entry, page.point

if entry.card.external_validation:  # beside the internal figures below: how the model did on a site it never saw
    st.markdown(f"**{entry.card.external_label}**")
    st.caption(external_sentence(entry.card.external_validation) + " From the model's card (`python -m cxr_core "
               "validate-external`): films of a site this model never trained on.")
evals = saved_evaluations(entry.path, entry.model_id)
if not evals:
    st.info("This model has no saved evaluation yet. Run one below.")
else:
    name = st.selectbox("Evaluation", list(evals), help="'internal validation' is the patient-grouped split held out "
                        "from the training data; other entries are folders evaluated with `evaluate`.")
    files, y, probs = read_scores(evals[name])
    summary = EvaluationFolder(evals[name].parent).summary()
    if name == "internal validation":
        st.caption("Internal validation: same hospital and period as the training data, so these figures flatter.")
    elif (summary.get("overlap") or {}).get("warning"):
        st.warning(summary["overlap"]["warning"], icon=":material/warning:")
    yb, p = (y > 0).astype(int), metrics.pneumonia_probability(probs)
    threshold = st.slider("Operating threshold on P(pneumonia)", 0.0, 1.0, point.threshold, 0.001, key="threshold",
                          format="%.3f", help=f"Starts at the threshold in use: {point.threshold:.3f}, {point.wording}. "
                          f"The model's own is {entry.card.threshold:.3f} (policy {entry.card.threshold_policy}).")
    b = metrics.binary_at_threshold(yb, p, threshold)
    auc = metrics.safe_auc(yb, p)
    cols = st.columns(6)
    for col, (label, value) in zip(cols, [("AUC", auc), ("Accuracy", b["accuracy"]), ("Sensitivity", b["sensitivity"]),
                                          ("Specificity", b["specificity"]), ("PPV", b["ppv"]), ("NPV", b["npv"])]):
        col.metric(label, f"{value:.3f}")
    st.caption(f"n = {len(y)} images: {', '.join(f'{c} {int((y == i).sum())}' for i, c in enumerate(CLASSES))}.")

    tab_roc, tab_cm, tab_cal, tab_rep, tab_rob = st.tabs(["ROC and PR", "Confusion matrices", "Calibration",
                                                          "Classification report", "Robustness"])
    with tab_roc:
        c1, c2 = st.columns(2)
        c1.plotly_chart(charts.roc({name: (metrics.roc_points(yb, p), auc)}, (1 - b["specificity"], b["sensitivity"])),
                        width="stretch")
        c2.plotly_chart(charts.precision_recall(metrics.pr_points(yb, p), (b["sensitivity"], b["ppv"])),
                        width="stretch")
    with tab_cm:
        normalise = st.toggle("Normalise by true class", value=False)
        three = metrics.three_class(y, probs, threshold)
        c1, c2 = st.columns(2)
        c1.plotly_chart(charts.confusion(b["confusion_matrix"], ["NORMAL", "PNEUMONIA"], normalise, "Binary"),
                        width="stretch")
        c2.plotly_chart(charts.confusion(three["confusion_matrix"], CLASSES, normalise, "3-class"), width="stretch")
        st.caption(f"3-class accuracy {three['accuracy']:.3f}, macro-F1 {three['macro_f1']:.3f}, "
                   f"bacterial-vs-viral AUC {three['bacterial_vs_viral_auc']:.3f}.")
    with tab_cal:
        st.plotly_chart(charts.reliability(metrics.reliability_curve(yb, p), metrics.expected_calibration_error(yb, p)),
                        width="stretch")
    with tab_rep:
        report = metrics.classification_report(y, probs, threshold)
        accuracy = report.pop("accuracy")  # a scalar: as a table row it would show under "support"
        st.dataframe(pd.DataFrame(report).T.round(3), width="stretch")
        st.caption(f"3-class accuracy {accuracy:.3f} (n = {len(y)}).")

    with tab_rob:
        robustness_view(entry.card)

    if name != "internal validation":
        site_operating_point_form(page, yb, p, threshold, summary, evals[name])

    # ---- misclassified images (needs the images: the folder an evaluation was run on)
    data_root = summary.get("data") if summary else entry.card.data_root
    with st.expander("Browse misclassified images"):
        pred3 = metrics.decide(probs, threshold)
        c1, c2 = st.columns(2)
        true_c = c1.selectbox("True class", CLASSES, index=0)
        pred_c = c2.selectbox("Predicted class", CLASSES, index=1)
        cell = [f for f, t, q in zip(files, y, pred3) if CLASSES[t] == true_c and CLASSES[q] == pred_c]
        st.caption(f"{len(cell)} image(s) in this cell.")
        try:
            root = resolve_data_dir(str(data_root or ""))
        except CXRError:
            root = None
            st.info("The images of this evaluation are not on disk here; the list above is all that can be shown.")
        if root is not None and cell and st.toggle("Show the images with Grad-CAM", key="show_misclassified"):
            grid = st.columns(4)
            for i, f in enumerate(cell[:8]):
                picture = _cam_picture(str(entry.path), entry.model_id, str(root / f))
                if picture is not None:
                    grid[i % 4].image(picture[0], clamp=True, caption=f"{f} P(pneu) {picture[1]:.2f}", width="stretch")

st.divider()
st.subheader("Run a fresh evaluation")
path_text = st.text_input("Labelled folder (NORMAL/ and PNEUMONIA/)",
                          value=st.session_state.get("evaluation_path") or data_dir_default(),
                          help="Set CXR_DATA_DIR to pre-fill this field; a Worklist export fills it too.")
if message := st.session_state.pop("evaluation_message", None):
    st.success(message)
if st.button("Evaluate", icon=":material/play_arrow:"):
    try:
        folder = resolve_data_dir(path_text)
        bar = st.progress(0.0, text="Evaluating...")

        def progress(total):
            return lambda done: bar.progress(done / total, text=f"{done} / {total} images")

        result = evaluate_folder(entry.path, folder, progress=progress, predictor=predictor_for(entry), point=point)
        bar.empty()
        s = result.summary
        b, t = s["binary"], s["three_class"]
        st.session_state["evaluation_message"] = (f"Evaluated {s['n']} images of `{s['data']}`: AUC {b['auc']:.3f} {ci(b['auc_ci95'])}, accuracy "
                   f"{b['accuracy']:.3f} {ci(b['accuracy_ci95'])}, sensitivity {b['sensitivity']:.3f}, specificity "
                   f"{b['specificity']:.3f}, 3-class accuracy {t['accuracy']:.3f} {ci(t['accuracy_ci95'])} "
                   "(95 % bootstrap CIs)." + (f" {len(s['failed'])} unreadable file(s) left out." if s["failed"] else "")
                   + (f" Warning: {s['overlap']['warning']}" if s["overlap"]["warning"] else "")
                   + (" Saved: pick it in the Evaluation box at the top of this page." if result.saved_to else
                      " The app's data folder ($CXR_HOME) is not writable: the scores were not saved."))
        st.rerun()  # the new evaluation is listed at the top at once
    except CXRError as exc:  # st.rerun() above raises its own exception, which is not caught here
        st.error(str(exc))

st.divider()
st.subheader("Compare models")
entries = {e.model_id: e for e in registry().list()}
chosen = st.multiselect("Models (internal validation)", list(entries), default=list(entries)[:2], max_selections=4)
if chosen:
    curves, table = {}, []
    for model_id in chosen:
        e = entries[model_id]
        scores = saved_evaluations(e.path, e.model_id).get("internal validation")
        if scores is None:
            continue
        _, yy, pp = read_scores(scores)
        yy_b, p_p = (yy > 0).astype(int), metrics.pneumonia_probability(pp)
        auc_m = metrics.safe_auc(yy_b, p_p)
        curves[e.display_name + f" [{model_id[-10:]}]"] = (metrics.roc_points(yy_b, p_p), auc_m)
        bt = metrics.binary_at_threshold(yy_b, p_p, e.card.threshold)
        table.append({"model": model_id, "AUC": auc_m, "accuracy": bt["accuracy"], "sensitivity": bt["sensitivity"],
                      "specificity": bt["specificity"], "3-class accuracy": metrics.three_class(yy, pp, bt["threshold"])["accuracy"],
                      "threshold": bt["threshold"], "n": len(yy)})
    if curves:
        st.plotly_chart(charts.roc(curves), width="stretch")
        st.dataframe(pd.DataFrame(table).round(3), hide_index=True, width="stretch")
        st.caption("Each model on its own internal-validation split: compare with care when the splits differ.")
