"""How the decision-boundary panel draws the engine's ``boundary`` payload (``bpviz.boundary``).

A heatmap: each grid cell gets the colour of the class the network predicts there, light where it
is unsure and strong where it is sure (z = class + its confidence, scaled to that class's band of
the colour scale), placed by its first coordinate and spacing (x0, dx, y0, dy: the grid is
regular); and the training points on top, coloured by their class.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import plotly.graph_objects as go

from .panels import PALETTE

HEATMAP = "decision boundary"
POINTS = "training points"


def _lighter(colour: str, amount: float) -> str:
    """``colour`` (#rrggbb) mixed with white by ``amount`` (0: itself, 1: white)."""
    rgb = [int(colour[i : i + 2], 16) for i in (1, 3, 5)]
    return "rgb({},{},{})".format(*(round(c + (255 - c) * amount) for c in rgb))


def colour_scale(n_classes: int) -> list[tuple[float, str]]:
    """One band per class, from a pale to a full version of its colour."""
    stops = []
    for c in range(n_classes):
        colour = PALETTE[c % len(PALETTE)]
        stops += [(c / n_classes, _lighter(colour, 0.9)), ((c + 1) / n_classes - 1e-6, _lighter(colour, 0.25))]
    stops[-1] = (1.0, stops[-1][1])
    return stops


def boundary_traces() -> list[go.BaseTraceType]:
    """The panel's trace, empty until the first payload."""
    return [
        go.Heatmap(
            name=HEATMAP,
            z=np.zeros((0, 0), np.float32),
            showscale=False,
            zsmooth=False,
            zmin=0,
            zmax=len(PALETTE),  # one band of the colour scale per class (up to len(PALETTE) classes)
            colorscale=colour_scale(len(PALETTE)),
            hovertemplate="(%{x:.2f}, %{y:.2f}): %{customdata:.0%} sure of the class shown<extra></extra>",
        ),
        go.Scatter(
            name=POINTS,
            x=np.zeros(0, np.float32),
            y=np.zeros(0, np.float32),
            mode="markers",
            marker=dict(size=5, line=dict(width=0.6, color="white")),
            showlegend=False,
            hovertemplate="training point (%{x:.2f}, %{y:.2f}), class %{customdata}<extra></extra>",
        ),
    ]


def update_boundary(data: Sequence[go.BaseTraceType], boundary: dict) -> None:
    """Put ``boundary`` into the panel's traces (inside the caller's batch update)."""
    k = boundary["n_classes"]
    predicted = np.asarray(boundary["predicted"], np.int64)
    confidence = np.asarray(boundary["confidence"], np.float32)
    sure = np.clip((confidence - 1 / k) / (1 - 1 / k), 0, 0.999)  # 0 at a toss-up, ~1 when certain
    xs, ys = boundary["x"], boundary["y"]
    points = boundary["points"]
    for trace in data:
        if trace.name == HEATMAP:
            trace.update(
                z=(predicted + sure).astype(np.float32),
                customdata=confidence,
                x0=xs[0],
                dx=(xs[-1] - xs[0]) / (len(xs) - 1),
                y0=ys[0],
                dy=(ys[-1] - ys[0]) / (len(ys) - 1),
            )
        elif trace.name == POINTS and len(trace.x) != len(points["x"]):  # the same points all run long
            trace.update(
                x=np.asarray(points["x"], np.float32),
                y=np.asarray(points["y"], np.float32),
                marker_color=[PALETTE[c % len(PALETTE)] for c in points["label"]],
                customdata=list(points["label"]),
            )
