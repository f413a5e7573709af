"""The one training loop: step, apply the one divergence rule, run what is due; and the schedules
and the step-rate meter its callers use.

Everything that trains — the live session, ``train.run`` behind ``bpviz compare`` and ``bpviz train``,
the lesson helpers, the CLI demo — calls :func:`train_loop`. What differs between them is what they
do around the steps, which they hand in as hooks, each with its own schedule (a callable: step ->
due?), as Cockpit does with its instruments; the loop itself knows no cadence, clock or display.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .optim import Algorithm, StepResult

if TYPE_CHECKING:  # train.py builds on this module
    from .train import Trainer

Schedule = Callable[[int], bool]


def every(n: int, last: int | None = None) -> Schedule:
    """Due every ``n`` steps, and at step ``last`` (the run's final step, so it is never missed)."""
    return lambda step: step % n == 0 or step == last


@dataclass
class Hook:
    """Something to do after a step when ``due(step)``: ``run(step, result)``. On the step that
    diverged only hooks with ``on_divergence`` run (recording the NaN loss is truthful; evaluating
    or analysing a NaN network would plot numbers that mean nothing)."""

    due: Schedule
    run: Callable[[int, StepResult], None]
    on_divergence: bool = False


@dataclass
class LoopEnd:
    """How a loop ended: ``finished`` (reached its step), ``stopped`` (``before_step`` said so) or
    ``diverged`` at ``step``, ``reason`` then being ``"loss"`` or ``"parameters"``."""

    status: str
    step: int
    reason: str = ""


def divergence(loss: float, algorithm: Algorithm, check_parameters: bool) -> str:
    """The one divergence rule: a NaN/Inf batch loss, or a NaN/Inf parameter (checked less often:
    it reads every parameter; a NaN parameter makes the next loss NaN anyway). "" when neither."""
    if not math.isfinite(loss):
        return "loss"
    if check_parameters and not algorithm.parameters_finite():
        return "parameters"
    return ""


def read_loss(result: StepResult) -> dict[str, float]:
    """The loop's default read: the batch loss alone."""
    return {"batch_loss": float(result.loss)}


def train_loop(
    trainer: Trainer,
    until: int,
    hooks: Sequence[Hook] = (),
    *,
    check: Schedule,
    check_parameters: Schedule | None = None,
    before_step: Callable[[], bool] | None = None,
    read: Callable[[StepResult], dict[str, float]] = read_loss,
) -> LoopEnd:
    """Train until ``trainer.step_count == until``. After each step: on ``check`` steps ``read`` the
    numbers of the step, ``batch_loss`` among them, in one device sync (into ``result.numbers``, for
    the hooks: a step is read once) and apply :func:`divergence` (parameters too on
    ``check_parameters`` steps), then run every due hook in order (on a diverged step only the
    ``on_divergence`` ones) and stop if it diverged. ``before_step`` runs first each time; False
    stops the loop."""
    check_parameters = check_parameters or check
    while trainer.step_count < until:
        if before_step is not None and not before_step():
            return LoopEnd("stopped", trainer.step_count)
        result = trainer.step()
        step = trainer.step_count
        reason = ""
        if check(step):
            result.numbers = read(result)
            reason = divergence(result.numbers["batch_loss"], trainer.algorithm, check_parameters(step))
        for hook in hooks:
            if (hook.on_divergence or not reason) and hook.due(step):
                hook.run(step, result)
        if reason:
            return LoopEnd("diverged", step, reason)
    return LoopEnd("finished", trainer.step_count)


class TimeShare:
    """A schedule that keeps a costly hook (the local-Hessian report) at most ``share`` of the time:
    after a run that took s seconds it is due again once s (1 - share) / share seconds have passed,
    not counting the time a caller reports as paused."""

    def __init__(self, share: float):
        self.share = share
        self._since = time.perf_counter()
        self._wait = 0.0

    def __call__(self, step: int) -> bool:
        return time.perf_counter() - self._since >= self._wait

    def ran(self, seconds: float) -> None:
        self._since = time.perf_counter()
        self._wait = seconds * (1 - self.share) / self.share

    def paused(self, seconds: float) -> None:
        self._since += seconds


#: with the adaptive cadence a run gets at least this many local-Hessian reports after the one at
#: step 0, at steps spaced geometrically from ``FIRST_REPORT`` to the last (front-loaded: the spectra
#: change most early on), so "κ over time" is a curve even where a report costs seconds (deep BN
#: nets); the first comes after the starting network's report, which waits for the first loss point
#: (step 10), so that neither holds that point up nor do two reports come at one step
MIN_REPORTS = 8
FIRST_REPORT = 20
#: the share of the time the adaptive cadence gives the reports beyond the front-loaded ones (those
#: come whatever they cost: a deep BN preset's run is then mostly reports, 92 % of deep-tanh-bn's
#: 1,000 steps on one CPU thread, bench/report_share.py)
REPORT_SHARE = 0.15


def front_loaded_steps(steps: int, n: int = MIN_REPORTS, first: int = FIRST_REPORT) -> set[int]:
    """n steps from ``first`` to ``steps``, geometrically spaced (fewer when the run is short)."""
    if steps <= first:
        return {steps}
    return {round(first * (steps / first) ** (i / (n - 1))) for i in range(n)}


#: seconds the shown steps/s is measured over: one publish period would swing with every
#: local-Hessian report that falls into it (130-470 steps/s for a steady 300, measured)
RATE_WINDOW = 2.0


class StepRate:
    """Steps per second over the last ``RATE_WINDOW`` seconds (a new one after a pause)."""

    def __init__(self, step: int):
        self._marks: deque[tuple[float, int]] = deque([(time.monotonic(), step)])

    def at(self, step: int) -> float:
        now = time.monotonic()
        self._marks.append((now, step))
        while len(self._marks) > 2 and now - self._marks[1][0] >= RATE_WINDOW:
            self._marks.popleft()
        return (step - self._marks[0][1]) / max(now - self._marks[0][0], 1e-9)


class ReportSchedule:
    """When the local-Hessian report is due: every ``every`` steps, or with ``"auto"`` at the
    front-loaded steps (whatever a report costs) and, besides, whenever reports have taken at most
    ``share`` of the time; never before ``started`` (the starting network's report, which waits for
    the first loss point)."""

    def __init__(self, steps: int, share: float):
        self._share = TimeShare(share)
        self._front = front_loaded_steps(steps)
        self.started = False

    def due(self, step: int, every: int | str) -> bool:
        if not self.started:
            return False
        return (step in self._front or self._share(step)) if every == "auto" else step % every == 0

    def ran(self, seconds: float) -> None:
        self.started = True
        self._share.ran(seconds)

    def paused(self, seconds: float) -> None:
        self._share.paused(seconds)
