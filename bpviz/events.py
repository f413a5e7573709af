"""Events from a publisher to its subscribers, never blocking the publisher: each subscriber has a
one-slot mailbox, so a slow one receives merged updates instead of a growing queue."""

from __future__ import annotations

import threading
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

#: points per series one merged event may carry; past it the event says ``truncated`` and the
#: subscriber re-reads ``session.snapshot()``.
EVENT_POINTS_CAP = 2000


class Mailbox:
    """A one-slot box: ``put`` merges into the waiting event instead of queueing behind it."""

    def __init__(self) -> None:
        self._event: dict | None = None
        self._cond = threading.Condition()
        self.closed = False

    def put(self, event: dict) -> None:
        with self._cond:
            self._event = event if self._event is None else merge_events(self._event, event)
            self._cond.notify_all()

    def get(self, timeout: float | None = None) -> dict | None:
        """The merged event waiting (None after ``timeout`` seconds or once closed)."""
        with self._cond:
            if self._event is None and not self.closed:
                self._cond.wait(timeout)
            event, self._event = self._event, None
            return event

    def close(self) -> None:
        with self._cond:
            self.closed = True
            self._cond.notify_all()


def merge_events(old: dict, new: dict) -> dict:
    """Newer scalars win; point lists concatenate, capped at EVENT_POINTS_CAP per series."""
    merged = {**old, **new}
    points = {name: list(series) for name, series in old.get("points", {}).items()}
    truncated = old.get("truncated", False) or new.get("truncated", False)
    for name, series in new.get("points", {}).items():
        joined = points.get(name, []) + list(series)
        if len(joined) > EVENT_POINTS_CAP:
            joined, truncated = joined[-EVENT_POINTS_CAP:], True
        points[name] = joined
    merged["points"], merged["truncated"] = points, truncated
    if "report" not in new and "report" in old:
        merged["report"] = old["report"]
    return merged


@dataclass
class Subscription:
    """A subscriber's handle: ``get`` for queue-style use; ``close`` to leave (``leave`` is the
    publisher's way of forgetting it)."""

    mailbox: Mailbox
    leave: Callable[[Subscription], None]
    thread: threading.Thread | None = None

    def get(self, timeout: float | None = None) -> dict | None:
        return self.mailbox.get(timeout)

    def close(self) -> None:
        self.leave(self)

    def deliver_to(self, callback: Callable[[dict], Any]) -> None:
        """Call ``callback`` with each (merged) event on a thread of its own, so a slow subscriber
        never slows the publisher; one that raises is reported and kept."""

        def deliver() -> None:
            while True:
                event = self.mailbox.get(timeout=1.0)
                if event is None:
                    if self.mailbox.closed:
                        return
                    continue
                try:
                    callback(event)
                except Exception:  # a broken subscriber must not take the session down
                    traceback.print_exc()

        self.thread = threading.Thread(target=deliver, name="bpviz-subscriber", daemon=True)
        self.thread.start()


class Subscribers:
    """Everyone watching one publisher: each gets every published event through a mailbox of its own."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._subs: list[Subscription] = []

    def add(self, first: dict, callback: Callable[[dict], Any] | None = None) -> Subscription:
        """A new subscriber, whose mailbox starts with ``first`` (the state now); with ``callback``
        it is called on its own thread with each (merged) event."""
        sub = Subscription(Mailbox(), self._remove)
        if callback is not None:
            sub.deliver_to(callback)
        with self._lock:
            self._subs.append(sub)
        sub.mailbox.put(first)
        return sub

    def publish(self, event: dict) -> None:
        with self._lock:
            for sub in self._subs:
                sub.mailbox.put(event)

    def _remove(self, sub: Subscription) -> None:
        with self._lock:
            if sub in self._subs:
                self._subs.remove(sub)
        sub.mailbox.close()
