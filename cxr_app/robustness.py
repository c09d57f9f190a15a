"""The Dashboards page's Robustness view: the model card's stress-suite results and threshold policy."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from cxr_app import charts
from cxr_core.model.card import ModelCard
from cxr_core.model.card_markdown import policy_lines, used_by_policy


def robustness_view(card: ModelCard) -> None:
    stress = card.stress
    if not stress:
        st.info("This model's card holds no stress-suite results (it predates them). Measure it on a labelled folder "
                "with `python -m cxr_core stress DATA_DIR`.", icon=":material/info:")
        return
    rows = stress["conditions"]
    st.caption(f"Scores on {stress.get('note', 'validation images')}, at the model's threshold "
               f"{card.threshold:.3f}. Shifts marked 'no' are not in training augmentation: "
               "they measure generalisation, except the sensitivity and specificity of the rows marked 'chose "
               "threshold', which the threshold policy was fitted on.")
    cols = st.columns(3)
    worst = stress.get("worst_acquisition_moderate") or stress["worst_moderate"]
    family = "acquisition family, moderate" if "worst_acquisition_moderate" in stress else "moderate shifts"
    for col, metric in zip(cols, ("auc", "sensitivity", "specificity")):
        w = worst[metric]
        col.metric(f"Worst {metric} ({family})", f"{w['value']:.3f}", help=f"at {w['condition']}")
    metric = st.radio("Metric", ["auc", "sensitivity", "specificity"], horizontal=True, key="stress_metric")
    clean = next((r[metric] for r in rows if r["severity"] == 0), None)
    st.plotly_chart(charts.stress_bars(rows, metric, clean), width="stretch")
    table = pd.DataFrame(rows)[["condition", "severity_name", "in_training_augmentation", "auc", "sensitivity",
                                "specificity", "accuracy", "n"]]
    table.insert(3, "chose threshold", table["condition"].isin(used_by_policy(card)))
    st.dataframe(table.round(3), hide_index=True, width="stretch")
    ev = card.threshold_evidence
    if ev:
        st.markdown("\n".join(policy_lines(card)))
    if ev and "per_condition_thresholds" in ev:
        thresholds = pd.DataFrame({"condition": list(ev["per_condition_thresholds"]),
                                   "threshold for the target": list(ev["per_condition_thresholds"].values())})
        st.dataframe(thresholds.round(4), hide_index=True, width="stretch")
