"""Polling for what another thread (a training worker, the app's publisher) does eventually."""

import time


def wait_for(predicate, timeout: float = 20.0) -> bool:
    """True as soon as predicate() is, False after timeout seconds."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(0.01)
    return False
