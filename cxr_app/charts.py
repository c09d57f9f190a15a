"""Plotly figures for the dashboards, viewer and training page (no Streamlit import)."""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import plotly.graph_objects as go

from cxr_core.model.evidence import StressRow
from cxr_core.model.decision import is_pneumonia


HEIGHT = 360


def _layout(fig: go.Figure, title: str, x: str, y: str, height: int = HEIGHT) -> go.Figure:
    fig.update_layout(title=title, xaxis_title=x, yaxis_title=y, height=height, margin=dict(l=50, r=20, t=50, b=45),
                      legend=dict(orientation="h", yanchor="bottom", y=-0.35),
                      modebar=dict(orientation="v"))  # a vertical tool bar never covers the title
    return fig


def roc(curves: dict[str, tuple[dict[str, list[float]], float]], point: tuple[float, float] | None = None) -> go.Figure:
    """ROC curves {name: (roc_points, auc)}; `point` = (1 - specificity, sensitivity) at the threshold."""
    fig = go.Figure()
    fig.add_trace(go.Scatter(x=[0, 1], y=[0, 1], mode="lines", line=dict(dash="dot", color="gray"), name="chance"))
    for name, (pts, auc) in curves.items():
        fig.add_trace(go.Scatter(x=pts["fpr"], y=pts["tpr"], mode="lines", name=f"{name} (AUC {auc:.3f})",
                                 customdata=pts["threshold"], hovertemplate="FPR %{x:.3f}<br>TPR %{y:.3f}<br>threshold %{customdata:.3f}"))
    if point is not None:
        fig.add_trace(go.Scatter(x=[point[0]], y=[point[1]], mode="markers", marker=dict(size=13, color="red", symbol="x"),
                                 name="operating point"))
    fig = _layout(fig, "ROC: pneumonia vs normal", "1 - specificity", "sensitivity")
    # Inside the empty lower-right corner of an ROC plot: below it, a long legend covered the axis title.
    return fig.update_layout(legend=dict(orientation="v", x=0.98, y=0.02, xanchor="right", yanchor="bottom",
                                         bgcolor="rgba(255,255,255,0.8)"))


def precision_recall(pts: dict[str, list[float]], point: tuple[float, float] | None = None) -> go.Figure:
    fig = go.Figure(go.Scatter(x=pts["recall"], y=pts["precision"], mode="lines", name="PR curve"))
    if point is not None:
        fig.add_trace(go.Scatter(x=[point[0]], y=[point[1]], mode="markers", marker=dict(size=13, color="red", symbol="x"),
                                 name="operating point"))
    return _layout(fig, "Precision-recall (pneumonia)", "recall (sensitivity)", "precision (PPV)")


def confusion(cm: Sequence[Sequence[int]], labels: Sequence[str], normalise: bool, title: str) -> go.Figure:
    m = np.asarray(cm, dtype=float)
    shown = m / np.maximum(m.sum(axis=1, keepdims=True), 1) if normalise else m
    text = [[f"{v:.2f}" if normalise else f"{int(v)}" for v in row] for row in shown]
    fig = go.Figure(go.Heatmap(z=shown, x=list(labels), y=list(labels), text=text, texttemplate="%{text}",
                               colorscale="Blues", showscale=False, hovertemplate="true %{y}<br>predicted %{x}<br>%{text}"))
    fig.update_yaxes(autorange="reversed")
    return _layout(fig, title, "predicted", "true", height=320)


def reliability(curve: dict[str, list[float]], ece: float) -> go.Figure:
    fig = go.Figure()
    fig.add_trace(go.Scatter(x=[0, 1], y=[0, 1], mode="lines", line=dict(dash="dot", color="gray"), name="perfect"))
    fig.add_trace(go.Scatter(x=curve["mean_predicted"], y=curve["fraction_positive"], mode="lines+markers", name="model"))
    return _layout(fig, f"Calibration (ECE {ece:.3f})", "mean predicted P(pneumonia)", "observed fraction with pneumonia")


def pneumonia_bar(p: float, threshold: float) -> go.Figure:
    """P(pneumonia) as one bar on [0, 1] against the threshold line: the figure the decision is made on."""
    colour = "#e45756" if is_pneumonia(p, threshold) else "#4c78a8"
    fig = go.Figure(go.Bar(x=[p], y=["P(pneumonia)"], orientation="h", marker_color=colour, text=[f"{p:.3f}"],
                           textposition="auto", hovertemplate="P(pneumonia) %{x:.3f}<extra></extra>"))
    fig.add_vline(x=threshold, line=dict(color="black", dash="dash", width=2),
                  annotation=dict(text=f"threshold {threshold:.3f}", font=dict(size=12)), annotation_position="top")
    fig.update_xaxes(range=[0, 1], tickvals=[0, 0.25, 0.5, 0.75, 1])
    fig.update_yaxes(visible=False)
    fig.update_layout(height=110, margin=dict(l=10, r=10, t=28, b=25), showlegend=False)
    return fig


def subtype_split(split: dict[str, float]) -> go.Figure:
    """The subtype as shares of pneumonia (bacterial + viral = 100 %): one stacked bar, never against NORMAL."""
    fig = go.Figure()
    for name, colour in (("BACTERIAL", "#f58518"), ("VIRAL", "#72b7b2")):
        fig.add_trace(go.Bar(x=[split[name]], y=["within pneumonia"], orientation="h", name=name.lower(),
                             marker_color=colour, text=[f"{name.lower()} {split[name]:.0%}"], textposition="inside",
                             insidetextanchor="middle", hovertemplate=f"{name.lower()} %{{x:.0%}}<extra></extra>"))
    fig.update_layout(barmode="stack", height=70, margin=dict(l=10, r=10, t=5, b=5), showlegend=False)
    fig.update_xaxes(range=[0, 1], visible=False)
    fig.update_yaxes(visible=False)
    return fig


def training_curves(history: list[dict[str, float]], pairs: Sequence[tuple[str, str]], title: str) -> go.Figure:
    fig = go.Figure()
    epochs = [int(r.get("epoch", i)) + 1 for i, r in enumerate(history)]
    for key, label in pairs:
        if any(key in r for r in history):
            fig.add_trace(go.Scatter(x=epochs, y=[r.get(key) for r in history], mode="lines+markers", name=label))
    return _layout(fig, title, "epoch", "", height=300)


def fold_curves(history: list[dict[str, float]], metric: str, title: str) -> go.Figure:
    """A site adaptation's rows, one line per fold (the final model's last): epochs as written, from 1."""
    fig = go.Figure()
    folds = sorted({r["fold"] for r in history if "fold" in r})  # the final model's rows read no fold number
    for fold in folds:
        rows = [r for r in history if r.get("fold") == fold and metric in r]
        fig.add_trace(go.Scatter(x=[int(r["epoch"]) for r in rows], y=[r[metric] for r in rows],
                                 mode="lines+markers", name=f"fold {int(fold)}"))
    final = [r for r in history if "fold" not in r and metric in r]
    if final:
        fig.add_trace(go.Scatter(x=[int(r["epoch"]) for r in final], y=[r[metric] for r in final],
                                 mode="lines+markers", name="final model", line=dict(dash="dash")))
    return _layout(fig, title, "epoch", "", height=300)


def grid_heatmap(rows: list[Any], cols: list[Any], values: np.ndarray, title: str, row_name: str, col_name: str) -> go.Figure:
    """A grid's metric per cell, with the value written large in each cell on a light-to-dark scale whose
    text colour Plotly picks for contrast."""
    fig = go.Figure(go.Heatmap(z=values, x=[str(c) for c in cols], y=[str(r) for r in rows], colorscale="Blues",
                               text=[[f"{v:.3f}" for v in row] for row in values], texttemplate="%{text}",
                               textfont=dict(size=16), colorbar=dict(thickness=12)))
    fig.update_xaxes(type="category")
    fig.update_yaxes(type="category")
    return _layout(fig, title, col_name, row_name, height=380)


def run_curves(histories: dict[str, list[dict[str, Any]]], metric: str, title: str) -> go.Figure:
    """One line per run over epochs; the legend sits right of the plot, never over the curves."""
    fig = go.Figure()
    for label, h in histories.items():
        if h:
            fig.add_trace(go.Scatter(x=[int(x["epoch"]) + 1 for x in h], y=[x.get(metric) for x in h],
                                     mode="lines+markers", name=label))
    _layout(fig, title, "epoch", metric, height=380)
    fig.update_xaxes(dtick=1)  # whole epochs
    return fig.update_layout(legend=dict(orientation="v", x=1.02, y=1, xanchor="left", yanchor="top"),
                             margin=dict(l=50, r=20, t=70, b=45),
                             modebar=dict(orientation="h"))  # above the plot: a vertical one covered the legend


def run_bars(labels: list[str], values: list[float], title: str, metric: str) -> go.Figure:
    """One bar per run with its value above it: the axis leaves room for the labels, and long run names slant."""
    fig = go.Figure(go.Bar(x=labels, y=values, text=[f"{v:.3f}" for v in values], textposition="outside",
                           cliponaxis=False))
    low = min(values) if values else 0.0
    fig.update_yaxes(range=[max(0.0, low - 0.05), 1.02])
    fig.update_xaxes(tickangle=-30, automargin=True)
    _layout(fig, title, "run", metric, height=400)
    return fig.update_layout(margin=dict(l=50, r=20, t=60, b=45))


def stress_bars(rows: list[StressRow], metric: str, threshold_line: float | None = None) -> go.Figure:
    """One bar per stress condition (grouped by shift, coloured by severity) for `metric`."""
    colours = {0: "#4c78a8", 1: "#72b7b2", 2: "#f58518", 3: "#e45756"}
    fig = go.Figure()
    for severity in sorted({r.severity for r in rows}):
        sub = [r for r in rows if r.severity == severity]
        fig.add_trace(go.Bar(x=[r.shift for r in sub], y=[getattr(r, metric) for r in sub],
                             marker_color=colours.get(severity), name=sub[0].severity_name if severity else "clean",
                             hovertemplate="%{x}<br>" + metric + " %{y:.3f}"))
    if threshold_line is not None:
        fig.add_hline(y=threshold_line, line_dash="dot", line_color="gray")
    fig.update_layout(barmode="group")
    values = [getattr(r, metric) for r in rows]
    low = min([v for v in values if v == v] + [1.0])
    fig.update_yaxes(range=[max(0.0, low - 0.05), 1.0])
    return _layout(fig, f"{metric} under acquisition shifts", "shift", metric, height=340)
