"""The Streamlit app's building blocks: session state, settings widgets, live training and shared page parts.

app.py and the page modules in ``pages/`` import these; they may import streamlit (the ``kamoe_viz`` library never
does) but hold no model math or statistics. Kept outside ``pages/`` so Streamlit never mistakes a helper for a page.
In an installed wheel this package also carries the app itself, in ``streamlit_app/`` (copied there by setup.py).
"""
