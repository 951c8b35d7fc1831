"""The studio: services the app is built from, on top of the core library, without the UI framework.

Snapshots and their capture, figures, export, run files, presets and settings, the training worker and its
protocol, the fork server, the background job. Only ``app.py``, ``ui.py`` and ``pages/`` import streamlit;
nothing in the core library (``vmonf``, outside this package) imports this package (``tests/test_layout.py``).
"""
