"""The states a training session goes through, and the error a control gets in the wrong one."""

from __future__ import annotations

from enum import Enum


class State(str, Enum):
    IDLE = "idle"
    RUNNING = "running"
    PAUSED = "paused"
    FINISHED = "finished"
    DIVERGED = "diverged"
    FAILED = "failed"


ENDED = (State.FINISHED, State.DIVERGED, State.FAILED)


class SessionError(RuntimeError):
    """A control that the session's current state does not allow; the message names the state."""
