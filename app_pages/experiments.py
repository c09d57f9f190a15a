"""Experiments: the results table of every finished experiment run, with its plots."""

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from cxr_app import charts
from cxr_app.state import case_store, sidebar_model_panel
from train.experiments import RESULTS_DIR, grid_values, read_experiment
from train.launcher import CONFIG_DIR, read_history

st.title("Experiments")
sidebar_model_panel(case_store())
st.caption("Internal validation (patient-grouped split of the training data). Run an experiment from the Training page "
           "or with `python -m train --config train/configs/experiments/NAME.toml --budget reduced`.")
tables = sorted(RESULTS_DIR.glob("*/results.csv"))
if not tables:
    st.info(f"No experiment results yet in `{RESULTS_DIR}`.")
    st.stop()
frames = [pd.read_csv(t) for t in tables]
results = pd.concat(frames, ignore_index=True)
experiments = sorted(results["experiment"].unique())
chosen = st.multiselect("Experiments", experiments, default=experiments)
shown = results[results["experiment"].isin(chosen)]
st.dataframe(shown.drop(columns=["overrides"]).round(3), hide_index=True, width="stretch")

for name in chosen:
    folder = RESULTS_DIR / name
    rows = results[results["experiment"] == name]
    st.subheader(name)
    md = folder / "results.md"
    if md.exists():
        with st.expander("Table, command and notes"):
            st.markdown(md.read_text())
    histories = {r.label: read_history(folder / f"history_{r.run}.csv") for r in rows.itertuples()}
    c1, c2 = st.columns(2)
    fig = go.Figure()
    for label, h in histories.items():
        if h:
            fig.add_trace(go.Scatter(x=[int(x["epoch"]) + 1 for x in h], y=[x.get("val_auc") for x in h],
                                     mode="lines+markers", name=label))
    fig.update_layout(title="Validation AUC per epoch (runs overlaid)", xaxis_title="epoch", height=340,
                      legend=dict(orientation="h", yanchor="bottom", y=-0.6), modebar=dict(orientation="v"))
    c1.plotly_chart(fig, width="stretch", key=f"curves_{name}")
    config_path = next((p for p in CONFIG_DIR.glob("experiments/*.toml") if f'name = "{name}"' in p.read_text()), None)
    spec = read_experiment(config_path) if config_path else None
    if spec and spec["kind"] == "grid":
        (k1, v1), (k2, v2) = spec["grid"].items()
        values = grid_values(rows.to_dict("records"), k1, v1, k2, v2, "val_auc")
        c2.plotly_chart(charts.grid_heatmap(v1, v2, values, "Validation AUC", k1, k2), width="stretch", key=f"grid_{name}")
    elif spec and spec["kind"] == "cv":
        box = go.Figure([go.Box(y=rows[k], name=k.replace("val_", ""), boxpoints="all") for k in
                         ("val_binary_accuracy", "val_auc", "val_3class_accuracy")])
        box.update_layout(title=f"{len(rows)}-fold CV spread", height=340, modebar=dict(orientation="v"))
        c2.plotly_chart(box, width="stretch", key=f"cv_{name}")
    else:
        bars = go.Figure(go.Bar(x=rows["label"], y=rows["val_auc"], text=np.round(rows["val_auc"], 3), textposition="auto"))
        bars.update_layout(title="Validation AUC per run", height=340, yaxis_range=[max(0, rows["val_auc"].min() - 0.05), 1],
                           modebar=dict(orientation="v"))
        c2.plotly_chart(bars, width="stretch", key=f"bars_{name}")
