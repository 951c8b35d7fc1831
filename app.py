"""VMoNF Studio: see, teach and use variational mixtures of normalizing flows. Run: streamlit run app.py"""

import streamlit as st

import ui

st.set_page_config(page_title="VMoNF Studio", page_icon=":material/scatter_plot:", layout="wide")
ui.ensure_plotly_js()
ui.teacher_mode()  # hide= and autoplay= of the link the session opened with
ui.warm_workers()

pages = [
    st.Page("pages/playground.py", title="2-D playground",
            icon=":material/scatter_plot:", default=True, url_path="playground"),
    st.Page("pages/images.py", title="Images (MNIST, digits)", icon=":material/pin:", url_path="images"),
    st.Page("pages/replay.py", title="Replay and export", icon=":material/movie:", url_path="replay"),
    st.Page("pages/how_it_works.py", title="How it works", icon=":material/menu_book:", url_path="how-it-works"),
]
st.navigation(pages).run()
