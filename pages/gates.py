"""Gates page (first version: the slot in the navigation; the full page replaces it)."""
import streamlit as st

from pages._state import require_run

st.title("Gates")
st.write("This page shows how the gate routes inputs: the distribution of gate weights, each expert's load and the gate's entropy, and for 2-D datasets a map of which expert wins where.")
run = require_run()
if run is not None:
    st.info("The Gates views for the current run are being built; the current run is shown in the sidebar.")
