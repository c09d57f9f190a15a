"""Experiments: the results table of every finished experiment run, with its plots."""

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from cxr_app import charts
from cxr_app.state import page_preamble
from train.experiments import RESULTS_DIR, grid_values, read_experiment
from train.launcher import CONFIG_DIR
from train.run_folder import read_history

st.title("Experiments")
page_preamble()
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
    # One chart per row, full width: side by side at 1280 px, legends covered the curves and labels were cut.
    st.plotly_chart(charts.run_curves(histories, "val_auc", "Validation AUC per epoch (runs overlaid)"),
                    width="stretch", key=f"curves_{name}")
    config_path = next((p for p in CONFIG_DIR.glob("experiments/*.toml") if f'name = "{name}"' in p.read_text()), None)
    spec = read_experiment(config_path) if config_path else None
    if spec and spec["kind"] == "grid":
        (k1, v1), (k2, v2) = spec["grid"].items()
        values = grid_values(rows.to_dict("records"), k1, v1, k2, v2, "val_auc")
        st.plotly_chart(charts.grid_heatmap(v1, v2, values, "Validation AUC", k1, k2), width="stretch", key=f"grid_{name}")
    elif spec and spec["kind"] == "cv":
        box = go.Figure([go.Box(y=rows[k], name=k.replace("val_", ""), boxpoints="all") for k in
                         ("val_binary_accuracy", "val_auc", "val_3class_accuracy")])
        box.update_layout(title=f"{len(rows)}-fold CV spread", height=380, showlegend=False, margin=dict(t=70))
        st.plotly_chart(box, width="stretch", key=f"cv_{name}")
    else:
        st.plotly_chart(charts.run_bars([str(v) for v in rows["label"]], [float(v) for v in rows["val_auc"]],
                                        "Validation AUC per run", "val_auc"), width="stretch", key=f"bars_{name}")
