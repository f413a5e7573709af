"""bpviz's UI layer, installed as ``bpviz.widgets``: ipywidgets controls and plotly dashboards that
subscribe to a training session's events. It draws what the engine emits and holds no maths.

``app`` (the ``Dashboard``, which owns one ``RunConfig``, and ``launch``), ``controls`` (generated
from the config's fields), ``figure`` (the panels as data), ``overlays`` (earlier runs),
``publisher`` (the one UI thread) and ``flow`` (flow control towards the page).
"""
