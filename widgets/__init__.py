"""bpviz's UI layer, installed as ``bpviz.widgets``: ipywidgets controls and plotly dashboards that
subscribe to a training session's events. It draws what the engine emits and holds no maths.
"""
