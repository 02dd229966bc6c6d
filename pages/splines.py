"""Splines page (first version: the slot in the navigation; the full page replaces it)."""
import streamlit as st

from pages._state import require_run

st.title("Splines")
st.write("This page shows every learned KAN edge function φ(x) of the GRKAN gate and of KAN experts, split into its base and spline parts, with each edge's importance and a symbolic fit.")
run = require_run()
if run is not None:
    st.info("The Splines views for the current run are being built; the current run is shown in the sidebar.")
