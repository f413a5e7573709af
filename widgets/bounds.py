"""κ values that are only lower bounds, as the figures draw them.

The engine records a block's κ as ``cond/<wrt>/<block>`` where the report gives it exactly and as
``cond_lower_bound/<wrt>/<block>`` where it can only bound it (a Krylov estimate, or a spectrum that
goes on below the zero floor); one block can have both, at different reports. A trace draws the two
as one line, each bound an open triangle with "κ ≥" in the hover, at any length of the trace.
"""

from __future__ import annotations

import html

import numpy as np

BOUND_SYMBOL = "triangle-up-open"


def merge_bounds(exact: dict | None, bound: dict) -> dict:
    """One series of a block's exact κ and its lower bounds, in step order, with ``bound`` per point."""
    exact = exact or {"step": [], "value": []}
    steps = list(exact["step"]) + list(bound["step"])
    values = list(exact["value"]) + list(bound["value"])
    flags = [False] * len(exact["step"]) + [True] * len(bound["step"])
    order = np.argsort(steps, kind="stable")
    return {key: [seq[i] for i in order] for key, seq in (("step", steps), ("value", values), ("bound", flags))}


def bound_marks(bound: np.ndarray, exact_size: float) -> dict:
    """Per point of a κ trace: an open triangle and "κ ≥" where the value is a lower bound, a dot of
    ``exact_size`` (0: none) and "κ =" where it is exact (the trace's hover shows the text)."""
    bound = np.asarray(bound, bool)
    return dict(
        marker=dict(
            symbol=np.where(bound, BOUND_SYMBOL, "circle").tolist(),
            size=np.where(bound, 7, exact_size).astype(np.float32),
        ),
        text=np.where(bound, "κ ≥", "κ =").tolist(),
        cliponaxis=False,  # whole triangles at the axes too (the report at step 0 sits on the y axis)
    )


def hover_bounds(name: str, extra: str) -> str:
    """The hover of a κ trace with lower bounds: "κ ≥" or "κ =" before each value (``bound_marks``)."""
    return f"{html.escape(name)}<br>step %{{x}}<br>%{{text}} %{{y:.4g}}<extra>{html.escape(extra)}</extra>"
