"""VMoNF Studio: see, teach and use variational mixtures of normalizing flows. Run: streamlit run app.py"""

import streamlit as st

import ui

st.set_page_config(page_title="VMoNF Studio", page_icon="🌀", layout="wide")
ui.ensure_plotly_js()
ui.warm_workers()

pages = [
    st.Page("pages/playground.py", title="2-D playground", icon="🌀", default=True, url_path="playground"),
    st.Page("pages/images.py", title="Images (MNIST, digits)", icon="🔢", url_path="images"),
    st.Page("pages/replay.py", title="Replay and export", icon="🎞️", url_path="replay"),
    st.Page("pages/how_it_works.py", title="How it works", icon="📖", url_path="how-it-works"),
]
st.navigation(pages).run()
