"""Streamlit-side helpers shared by the pages: model state, charts and result rendering.

Pages lay out; the computations live in cxr_core. `charts` imports plotly only (no Streamlit)."""
