"""Learning-rate schedules: the factor the step size is multiplied by before each step.

``step`` is the usual CIFAR recipe's decay (x0.1 after half the steps, x0.01 after three quarters);
``cosine`` is SGDR's annealing without restarts (Loshchilov & Hutter 2017). The factor depends only
on the step and the run's length, so a resumed run continues the same curve.
"""

from __future__ import annotations

import math

SCHEDULES = ("constant", "step", "cosine")


def lr_factor(schedule: str, step: int, steps: int) -> float:
    """The factor at ``step`` (0-based: the step about to be taken) of a ``steps``-step run; past the
    last step the last factor holds (a run extended by a resume keeps its final step size)."""
    t = min(step, steps - 1)
    if schedule == "constant":
        return 1.0
    if schedule == "step":
        return 0.1 ** ((t >= steps // 2) + (t >= (3 * steps) // 4))
    if schedule == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * t / steps))
    raise ValueError(f"lr_schedule: got {schedule!r}; allowed: {', '.join(map(repr, SCHEDULES))}")
