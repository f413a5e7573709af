"""The browser tests' helpers. Serving Voila, launching Chromium and the page probes that
bench/dashboard.py uses too live in bench/voila_chromium.py and are re-exported here; what only the
tests use is below.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

from voila_chromium import (  # noqa: E402 (after the path insert)
    ALL_TRACES,
    ARTIFACTS,
    NOTEBOOK,
    PLOT,
    free_port,
    http_get,
    launch_browser,
    log_tail,
    lr_readout,
    open_app,
    press_lr,
    start_voila,
    status_lr,
    status_text,
    stop_voila,
    traces,
    wait_points,
    wait_ready,
)

#: re-exported for conftest.py and the tests, which import them from here
__all__ = [
    "ALL_TRACES",
    "ARTIFACTS",
    "NOTEBOOK",
    "PLOT",
    "free_port",
    "http_get",
    "launch_browser",
    "log_tail",
    "lr_readout",
    "open_app",
    "press_lr",
    "start_voila",
    "status_lr",
    "status_text",
    "stop_voila",
    "traces",
    "wait_points",
    "wait_ready",
    "trace_names",
    "screenshot",
    "Clock",
]

#: the names of all traces (null before the figure rendered)
TRACE_NAMES_JS = "() => document.querySelector('%s') ? %s.map(t => t.name) : null" % (PLOT, ALL_TRACES)


def trace_names(page) -> list[str]:
    return page.evaluate(TRACE_NAMES_JS) or []


def screenshot(page, name: str) -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path))  # the viewport: Voila's page scrolls inside its own container
    return path


class Clock:
    """Prints how long each phase of a test took (shown with -s, or under a failure's captured output)."""

    def __init__(self) -> None:
        self.t0 = self.last = time.monotonic()

    def __call__(self, phase: str) -> None:
        now = time.monotonic()
        print(f"[{now - self.t0:6.1f} s, +{now - self.last:5.1f}] {phase}", flush=True)
        self.last = now
