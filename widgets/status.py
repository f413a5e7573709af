"""What the page says about the run in words: the status line and the messages of its ends."""

from __future__ import annotations

STOPPING = "Stopping: the run ends once the local-Hessian report it is computing is done."


def status_line(snap: dict) -> str:
    """State, step, rate, device and step size, from a session snapshot."""
    ready = " · ready: press Start" if snap["state"] == "idle" else ""
    return (
        f"<b>{snap['state']}</b>{ready} · step {snap['step']} · {snap['steps_per_s']:.0f} steps/s · "
        f"{snap['device']} · lr {snap['lr']:.2e}"
    )


def ended_badly(snap: dict) -> str:
    """The message of a run that diverged or failed, and what to do next."""
    state, what = snap["state"], snap["message"]
    what = f"Run {what}" if what.startswith(state) else f"Run {state}: {what}"
    return f"{what}. The history up to then is kept; change the step size and press Reset."
