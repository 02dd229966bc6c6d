"""Compare page (first version: the slot in the navigation; the full page replaces it)."""
import streamlit as st

from pages._state import require_run

st.title("Compare")
st.write("This page shows linear, GRN and GRKAN gates trained side by side over several seeds on the same data, with paired statistics.")
run = require_run()
if run is not None:
    st.info("The Compare views for the current run are being built; the current run is shown in the sidebar.")
