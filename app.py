"""chestlab dashboard (placeholder until the dashboard issue lands)."""

import streamlit as st

st.set_page_config(page_title="chestlab", layout="wide")
st.title("chestlab — hyperbolic deep metric learning")
st.write("The live training dashboard is being built. Meanwhile, see the notebooks in `notebooks/`.")
