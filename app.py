"""VMoNF Studio: see, teach and use variational mixtures of normalizing flows. Run: streamlit run app.py"""

import streamlit as st

import ui

st.set_page_config(page_title="VMoNF Studio", page_icon=":material/scatter_plot:", layout="wide")
ui.ensure_plotly_js()
ui.teacher_mode()  # hide=, autoplay=, present= and palette= of the link the session opened with
ui.display_controls()
ui.warm_workers()

# Each page's address is its file's name: on a fresh server Streamlit's first run still knows the pages by
# their files (pages/), and a deep link to any other name opened with a "Page not found" notice.
playground = st.Page("pages/playground.py", title="2-D playground", icon=":material/scatter_plot:",
                     url_path="playground")


def start() -> None:
    """The bare address opens the playground at its own (a default page has none), with the link's settings."""
    st.switch_page(playground, query_params=st.query_params.to_dict())


pages = [
    st.Page(start, title="Start", default=True, visibility="hidden"),
    playground,
    st.Page("pages/images.py", title="Images (MNIST, digits)", icon=":material/pin:", url_path="images"),
    st.Page("pages/replay.py", title="Replay and export", icon=":material/movie:", url_path="replay"),
    st.Page("pages/watch.py", title="Watch a run", icon=":material/visibility:", url_path="watch"),
    st.Page("pages/how_it_works.py", title="How it works", icon=":material/menu_book:", url_path="how_it_works"),
]
st.navigation(pages).run()
