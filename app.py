"""RSR Explorer: `streamlit run app.py`. The entry point: page navigation and the sidebar every page shares."""
import streamlit as st

from rsr_core.ui import state
from rsr_core.ui.analysis_cache import prepare_default_selection
from rsr_core.ui.layout import page_style
from rsr_core.ui.navigation import available_pages
from rsr_core.ui.sidebar import render_sidebar

st.set_page_config(layout="wide", page_title="RSR Explorer")
page_style()
page = st.navigation([st.Page(p.path, title=p.title, icon=p.icon, default=p.default) for p in available_pages()])
render_sidebar()
page.run()
job = state.current_job()
if job is None or not job.running:  # while the browser draws; not at every commit of a running job
    prepare_default_selection(state.current_table(), state.current_student())
