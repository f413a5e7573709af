"""Where the figure's panels sit: every panel has its own pair of axes (panel i: ``x{i+1}``/``y{i+1}``)
for the life of the figure; a run shows the panels meant for it, or the one the view picks, large,
laid out two to a row, the others hidden; and how far the step axes reach.
"""

from __future__ import annotations

import html
import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

import plotly.graph_objects as go

from .panels import PANELS, Panel

if TYPE_CHECKING:
    from bpviz.config import RunConfig

ALL = "all panels"
#: what the view menu offers: every panel of the run, or one of them alone and large
VIEWS = (ALL, *(p.short for p in PANELS))
#: the figure's height in px in the normal and the projector layout (which fits a 1280×720 screen)
HEIGHTS = {False: 780, True: 540}
FIXED_UP_TO = 2000  # a run this long has the whole run as its x range; a longer one's range grows


def panels_for(cfg: RunConfig, view: str = ALL) -> list[Panel]:
    """The panels a run shows: all that are meant for it, or the one ``view`` names."""
    meant = [p for p in PANELS if p.when(cfg)]
    return [p for p in meant if p.short == view] or meant


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


def axis_name(i: int, letter: str) -> str:
    """Panel i's axis in plotly's layout: ``xaxis``, ``xaxis2``, ..."""
    return f"{letter}axis" if i == 0 else f"{letter}axis{i + 1}"


def axis_ref(i: int, letter: str) -> str:
    return letter if i == 0 else f"{letter}{i + 1}"


def base_layout() -> go.Layout:
    """Axes for every panel (hidden until a run shows the panel) and readable log ticks."""
    layout = go.Layout(
        height=HEIGHTS[False],  # plotly's widget cannot take its element's height: the layout sets it
        autosize=True,  # and the width follows the window
        margin=dict(l=60, r=10, t=30, b=45),
        uirevision="keep",
        legend=dict(font=dict(size=10)),
        hovermode="closest",
        font=dict(size=12),
    )
    for i, p in enumerate(PANELS):
        log = dict(minorloglabels="none", exponentformat="power") if p.y_type == "log" else {}
        layout[axis_name(i, "x")] = dict(
            anchor=axis_ref(i, "y"),
            visible=False,
            title=dict(text=p.x_title, standoff=4),
        )
        layout[axis_name(i, "y")] = dict(
            anchor=axis_ref(i, "x"),
            visible=False,
            type=p.y_type,
            title=dict(text=p.y_title, standoff=4),
            **log,
            **p.y_axis,
        )
    return layout


def grid(panels: Sequence[Panel]) -> tuple[dict, list[dict]]:
    """Axis domains for ``panels``, two to a row (one alone fills the figure), and their titles.
    A step axis is titled only at the bottom of its column; spectrum and boundary axes always."""
    cols = 1 if len(panels) == 1 else 2
    rows = math.ceil(len(panels) / cols)
    gap_x, gap_y = 0.1, 0.4 / rows
    w, h = (1 - gap_x * (cols - 1)) / cols, (1 - gap_y * (rows - 1)) / rows
    updates, titles = {}, []
    for i, p in enumerate(PANELS):
        if p not in panels:
            updates[axis_name(i, "x")] = updates[axis_name(i, "y")] = dict(visible=False)
            continue
        r, c = divmod(panels.index(p), cols)
        x0, y1 = c * (w + gap_x), 1 - r * (h + gap_y)
        bottom = panels.index(p) + cols >= len(panels)
        x_title = p.x_title if bottom or p.kind != "steps" else ""
        # rounded: a sum of fractions can land a hair outside [0, 1], which plotly refuses
        updates[axis_name(i, "x")] = dict(visible=True, domain=[round(x0, 6), round(x0 + w, 6)], title_text=x_title)
        updates[axis_name(i, "y")] = dict(visible=True, domain=[round(y1 - h, 6), round(y1, 6)])
        titles.append(
            dict(text=f"<b>{html.escape(p.title)}</b>", x=x0 + w / 2, y=y1, xref="paper", yref="paper", name="title")
            | dict(xanchor="center", yanchor="bottom", showarrow=False, font=dict(size=13))
        )
        for note in p.notes:
            titles.append(
                {"xref": f"{axis_ref(i, 'x')} domain", "yref": f"{axis_ref(i, 'y')} domain", "showarrow": False, **note}
            )
    return updates, titles
