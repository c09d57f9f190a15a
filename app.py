"""CXR pneumonia assistant: `streamlit run app.py`. Navigation and the always-visible model panel."""

from pathlib import Path

import streamlit as st

# A local icon: a Material icon as the page icon is fetched from fonts.gstatic.com, and a hospital network is offline
st.set_page_config(page_title="CXR pneumonia assistant", page_icon=str(Path(__file__).parent / "assets" / "icon.png"), layout="wide")

viewer = st.Page("app_pages/viewer.py", title="Viewer", icon=":material/radiology:", url_path="viewer")


def _start() -> None:
    """The app's root address opens the Viewer at its own address (/viewer), so that every link to a case
    (/viewer?case=7) is the same wherever it is opened; the root's query parameters go with it."""
    st.switch_page(viewer, query_params=st.query_params.to_dict())


pages = [
    st.Page(_start, title="Start", default=True, visibility="hidden"),
    viewer,
    st.Page("app_pages/worklist.py", title="Worklist", icon=":material/list_alt:"),
    st.Page("app_pages/pacs.py", title="PACS", icon=":material/lan:"),
    st.Page("app_pages/dashboards.py", title="Dashboards", icon=":material/monitoring:"),
    st.Page("app_pages/training.py", title="Training", icon=":material/model_training:"),
    st.Page("app_pages/experiments.py", title="Experiments", icon=":material/science:"),
]
st.navigation(pages).run()  # each page draws the model panel (cxr_app.state.sidebar_model_panel)
