"""Experts page (first version: the slot in the navigation; the full page replaces it)."""
import streamlit as st

from pages._state import require_run

st.title("Experts")
st.write("This page shows what each expert specialised in: its share of each regime or class, its own error, and what happens to the prediction when one expert is switched off.")
run = require_run()
if run is not None:
    st.info("The Experts views for the current run are being built; the current run is shown in the sidebar.")
