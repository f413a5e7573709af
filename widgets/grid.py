"""Where the panels sit: every panel is a plotly figure of its own, laid out two to a row in a grid
(or one of them alone and large), each sized so that the panels fill the figure's height; and how
far the step axes reach.

One figure per panel, not one figure with subplots: plotly redraws a whole figure on every update,
and a tick that brings a new loss and new gradient norms redrew all six panels (~100 ms in a static
page) where redrawing the two panels that changed takes ~30 ms (measured in headless Chromium,
docs/results.md).
"""

from __future__ import annotations

import html
import math
from typing import TYPE_CHECKING

import plotly.graph_objects as go

from .panels import PANELS, Panel

if TYPE_CHECKING:
    from bpviz.config import RunConfig

ALL = "all panels"
#: what the view menu offers: every panel of the run, or one of them alone and large
VIEWS = (ALL, *(p.short for p in PANELS))
#: the panels' height in px, all rows together, in the normal and the projector layout (which fits 1280×720)
HEIGHTS = {False: 780, True: 540}
FIXED_UP_TO = 2000  # a run this long has the whole run as its x range; a longer one's range grows
TOP, BOTTOM, BOTTOM_UNTITLED = 30, 45, 25  # px: room for the title and legend, and the x axis' ticks and title


def panels_for(cfg: RunConfig, view: str = ALL) -> list[Panel]:
    """The panels a run shows: all that are meant for it, or the one ``view`` names."""
    meant = [p for p in PANELS if p.when(cfg)]
    return [p for p in meant if p.short == view] or meant


def columns(n_panels: int) -> int:
    return 1 if n_panels == 1 else 2


def panel_height(n_panels: int, present: bool) -> int:
    """Each panel's height: the rows share the figure's height."""
    return HEIGHTS[present] // math.ceil(n_panels / columns(n_panels))


def x_titled(panels: list[Panel], p: Panel) -> bool:
    """A step axis is titled only at the bottom of its column; spectrum and boundary axes always."""
    return p.kind != "steps" or panels.index(p) + columns(len(panels)) >= len(panels)


def x_extent(step: int, total: int) -> float:
    """The end of the step axes: the whole run if it is short, else the next 1-2-5 number above
    1.25 × the step reached, so that the current run fills its axes and a longer earlier run is
    cut at the edge rather than squeezing it."""
    if total <= FIXED_UP_TO:
        return total
    target, exponent = max(1.25 * step, 100.0), 2
    while True:
        for mantissa in (1, 2, 5):
            if mantissa * 10**exponent >= target:
                return min(mantissa * 10**exponent, total)
        exponent += 1


def panel_layout(p: Panel) -> go.Layout:
    """A panel's figure: its title on the left of the top margin, its legend (if any) on the right
    of it, its axes with readable log ticks, and its notes."""
    log = dict(minorloglabels="none", exponentformat="power") if p.y_type == "log" else {}
    return go.Layout(
        height=HEIGHTS[False] // 3,  # plotly's widget cannot take its element's height: the layout sets it
        autosize=True,  # and the width follows the window
        margin=dict(l=60, r=10, t=TOP, b=BOTTOM),
        uirevision="keep",
        hovermode="closest",
        font=dict(size=12),
        title=dict(text=f"<b>{html.escape(p.title)}</b>", x=0, xref="paper", xanchor="left", y=1, yref="container")
        | dict(yanchor="top", pad=dict(t=6), font=dict(size=13)),
        legend=dict(orientation="h", x=1, xanchor="right", y=1, yanchor="bottom", font=dict(size=10)),
        xaxis=dict(title=dict(text=p.x_title, standoff=4)),
        yaxis=dict(type=p.y_type, title=dict(text=p.y_title, standoff=4), **log, **p.y_axis),
        annotations=[dict(xref="x domain", yref="y domain", showarrow=False, **note) for note in p.notes],
    )
