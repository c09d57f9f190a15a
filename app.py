"""CXR pneumonia assistant: `streamlit run app.py`. Navigation and the always-visible model panel."""

import streamlit as st

st.set_page_config(page_title="CXR pneumonia assistant", page_icon=":material/radiology:", layout="wide")

pages = [
    st.Page("app_pages/viewer.py", title="Viewer", icon=":material/radiology:", default=True),
    st.Page("app_pages/worklist.py", title="Worklist", icon=":material/list_alt:"),
    st.Page("app_pages/pacs.py", title="PACS", icon=":material/lan:"),
    st.Page("app_pages/dashboards.py", title="Dashboards", icon=":material/monitoring:"),
    st.Page("app_pages/training.py", title="Training", icon=":material/model_training:"),
    st.Page("app_pages/experiments.py", title="Experiments", icon=":material/science:"),
]
st.navigation(pages).run()  # each page draws the model panel (cxr_app.state.sidebar_model_panel)
