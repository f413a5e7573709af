"""One panel's plotly figure: a FigureWidget the app thread changes safely, and keeps as the state
a page that connects later starts from; the bounds on what it draws (points per trace, blocks per panel).
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from copy import deepcopy

import numpy as np

from .grid import panel_layout
from .panels import Panel
from .plotly_once import FigureWidget

MAX_BLOCK_TRACES = 8  # blocks drawn per panel (spread over the depth)
MAX_POINTS = 200  # points per trace per update: bounds the bytes one update sends


def downsample(steps: Sequence, values: Sequence, n: int = MAX_POINTS) -> tuple[np.ndarray, np.ndarray]:
    """At most n points, evenly spread, last point kept; float32 so plotly sends binary buffers."""
    x, y = np.asarray(steps, np.float32), np.asarray(values, np.float32)
    if len(x) > n:
        idx = np.unique(np.linspace(0, len(x) - 1, n).round().astype(int))
        x, y = x[idx], y[idx]
    return x, y


def shown_blocks(depth: int) -> list[int]:
    """Which blocks get their own traces: all of a shallow net, an even spread of a deep one."""
    return sorted(set(np.linspace(0, depth - 1, min(depth, MAX_BLOCK_TRACES)).round().astype(int).tolist()))


class LockedFigureWidget(FigureWidget):
    """A FigureWidget that the app thread changes only while no page message is being applied.

    Applying a page message holds trait notifications, and traitlets merges the changes made
    meanwhile, from any thread: plotly's ``_py2js_update = message; _py2js_update = None`` from the
    app thread would reach the page as None, and that update would be lost."""

    def __init__(self, *args, **kwargs):
        self._state_lock = threading.RLock()
        super().__init__(*args, **kwargs)

    def set_state(self, sync_data: dict) -> None:
        with self._state_lock:
            super().set_state(sync_data)

    def changing(self):
        """Hold this while changing the figure (around ``batch_update``)."""
        return self._state_lock


def keep_state(widget: LockedFigureWidget) -> None:
    """The figure now is also the state a page that connects later starts from: a FigureWidget
    inside a Box keeps the state it was created with (Voila renders after the notebook ran), and
    only later deltas would reach such a page, which would start from an empty plot. Kept again
    whenever a property that is sent once changes (the decision boundary's grid and points, a
    trace's mode, marks): the series sent at every draw bring themselves up to date."""
    widget._widget_data = deepcopy(widget._data)
    widget._widget_layout = deepcopy(widget._layout_obj._props)


def panel_widget(p: Panel) -> LockedFigureWidget:
    """Panel p's figure, empty; its page's class names the panel (``bpviz-panel-loss``)."""
    widget = LockedFigureWidget(layout=panel_layout(p))
    # plotly's widget re-fits its width to the window only when told so: under anywidget (Voila)
    # no resize message reaches it, so a window made narrower would cut the figure off
    widget._config = {**widget._config, "responsive": True}
    widget.add_class("bpviz-figure")
    widget.add_class(f"bpviz-panel-{p.short.replace(' ', '-')}")
    return widget
