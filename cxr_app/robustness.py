"""The Dashboards page's Robustness view: the model card's stress-suite results and threshold policy."""

from __future__ import annotations

from dataclasses import asdict

import pandas as pd
import streamlit as st

from cxr_app import charts
from cxr_core.model.card import ModelCard
from cxr_core.model.card_markdown import policy_lines
from cxr_core.model.evidence import stress_rows


def robustness_view(card: ModelCard) -> None:
    stress = card.stress
    if not stress:
        st.info("This model's card holds no stress-suite results (it predates them). Measure it on a labelled folder "
                "with `python -m cxr_core stress DATA_DIR`.", icon=":material/info:")
        return
    rows = stress_rows(stress, card.threshold_evidence)
    st.caption(f"Scores on {stress.note or 'validation images'}, at the model's threshold "
               f"{card.threshold:.3f}. Shifts marked 'no' are not in training augmentation: "
               "they measure generalisation, except the sensitivity and specificity of the rows marked 'chose "
               "threshold', which the threshold policy was fitted on.")
    family, worst = stress.headline()
    for col, (metric, w) in zip(st.columns(3), worst.shown()):
        col.metric(f"Worst {metric} ({family})", f"{w.value:.3f}", help=f"at {w.condition}")
    metric = st.radio("Metric", ["auc", "sensitivity", "specificity"], horizontal=True, key="stress_metric")
    clean = next((getattr(r, metric) for r in rows if r.severity == 0), None)
    st.plotly_chart(charts.stress_bars(rows, metric, clean), width="stretch")
    table = pd.DataFrame([asdict(r) for r in rows])
    st.dataframe(table[["condition", "severity_name", "in_augmentation", "chose_threshold", "auc", "sensitivity",
                        "specificity", "accuracy", "n"]].round(3), hide_index=True, width="stretch")
    ev = card.threshold_evidence
    if ev:
        st.markdown("\n".join(policy_lines(card)))
    if ev and ev.per_condition_thresholds:
        thresholds = pd.DataFrame({"condition": list(ev.per_condition_thresholds),
                                   "threshold for the target": list(ev.per_condition_thresholds.values())})
        st.dataframe(thresholds.round(4), hide_index=True, width="stretch")
