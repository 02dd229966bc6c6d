"""Attribution page (first version: the slot in the navigation; the full page replaces it)."""
import streamlit as st

from pages._state import require_run

st.title("Attribution")
st.write("This page shows which input features drive the gate's choice of expert and the final prediction (Captum attributions).")
run = require_run()
if run is not None:
    st.info("The Attribution views for the current run are being built; the current run is shown in the sidebar.")
