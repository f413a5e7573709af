"""Between the app and its page: flow control for the figure's updates, and the page's heartbeat."""

from __future__ import annotations

import time

import ipywidgets as W

ACK_TIMEOUT = 3.0  # seconds an unanswered figure update holds the next one back, at most
HEARTBEAT_TIMEOUT = 60.0  # seconds without a page heartbeat before a running session is stopped


class PageFlow:
    """Flow control for the figure: at most ``in_flight`` updates on their way to the page.

    A browser that draws slower than updates arrive queues them, and every later message waits
    behind the queue: the status line falls seconds behind, and so does the reply a control waits
    for before it sends its next change, so a burst of slider presses reached the kernel only
    after many seconds (seen on a busy 2-core machine). After each update the app bumps ``ping``;
    a link in the page copies it to ``pong`` when the page has got that far, and that comes back.
    Three in flight, not one: each answer takes ~0.25 s through a kernel that is training, and
    waiting for every one halved the update rate (2 vs 4 a second, measured here); three queued
    updates are a fraction of a second of the page's drawing. A kernel no page answers (headless
    use, before the page connects: ``pong`` still -1) is not held back, and a lost answer holds an
    update back at most ``timeout`` seconds."""

    def __init__(self, in_flight: int = 3, timeout: float = ACK_TIMEOUT):
        self.in_flight = in_flight
        self.timeout = timeout
        hidden = W.Layout(display="none")
        self.ping = W.IntText(value=0, layout=hidden)
        self.pong = W.IntText(value=-1, layout=hidden)  # the page's link sets it to ping when it starts
        self.link = W.jsdlink((self.ping, "value"), (self.pong, "value"))
        self._sent_at = 0.0

    def ready(self) -> bool:
        """May the next figure update go out now?"""
        return (
            self.pong.value < 0
            or self.ping.value - self.pong.value < self.in_flight
            or time.monotonic() - self._sent_at > self.timeout
        )

    def sent(self) -> None:
        """Call right after sending a figure update (from the same thread, so the ping follows it)."""
        self._sent_at = time.monotonic()
        self.ping.value += 1


class Heartbeat:
    """A hidden Play widget in the page ticks every 2 s once a run starts; a page that is gone
    (closed or asleep) stops ticking, so the app can stop a run nobody watches."""

    def __init__(self, timeout: float = HEARTBEAT_TIMEOUT):
        self.timeout = timeout
        self.last: float | None = None  # when the page last ticked (None: it never has)
        self.widget = W.Play(interval=2000, max=10**9, show_repeat=False, layout=W.Layout(display="none"))
        self.widget.observe(lambda change: setattr(self, "last", time.monotonic()), names="value")

    def start(self) -> None:
        self.widget.playing = True

    def silent(self) -> bool:
        """Has a page that ticked stopped ticking for longer than ``timeout``?"""
        return self.last is not None and time.monotonic() - self.last > self.timeout
