"""The app's one UI thread: it runs the commands the widgets queue, and redraws on a fixed grid.

Widget callbacks only queue commands, so no callback ever waits for training, and exactly one
thread writes to the figure and the controls.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from typing import Any


class Publisher:
    """Runs ``commands[name](arg)`` for each queued command, and ``tick()`` at most ``max_rate``
    times a second; an error in either is reported with ``say`` and the thread goes on."""

    def __init__(
        self,
        commands: dict[str, Callable[[Any], None]],
        tick: Callable[[], None],
        say: Callable[[str], None],
        max_rate: float,
    ):
        self.commands, self._tick, self._say = commands, tick, say
        self.period = 1.0 / max_rate
        self._queue: queue.Queue = queue.Queue()
        self._alive = True
        self.thread = threading.Thread(target=self._loop, name="bpviz-publisher", daemon=True)

    def put(self, command: str, arg: Any = None) -> None:
        """Queue a command (from any thread)."""
        self._queue.put((command, arg))

    def start(self) -> None:
        self.thread.start()

    def close(self, timeout: float = 5.0) -> None:
        """Stop the thread after its current command or tick, and wait for it (not from itself)."""
        self._alive = False
        if self.thread.is_alive() and self.thread is not threading.current_thread():
            self.thread.join(timeout)

    def _loop(self) -> None:
        deadline = time.monotonic()
        while self._alive:
            # ticks on a fixed grid, so the time a redraw takes does not lower the rate
            deadline = max(deadline + self.period, time.monotonic())
            try:
                while True:
                    command, arg = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
                    self.commands[command](arg)
            except queue.Empty:
                pass
            except Exception as exc:  # the app stays responsive whatever one command did
                self._say(f"{type(exc).__name__}: {exc}")
            try:
                self._tick()
            except Exception as exc:
                self._say(f"display error: {type(exc).__name__}: {exc}")
