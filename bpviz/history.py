"""Bounded metric history: a run of any length keeps memory flat and a plot snapshot a fixed size.

Each series keeps its most recent points at full resolution; older points are folded into buckets
that keep min, max and mean, so a spike stays visible however far back it lies. When there are too
many buckets, neighbours merge pairwise (bucket width doubles), like a zoomable overview.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass


@dataclass
class Bucket:
    step_first: int
    step_last: int
    total: float
    count: int
    low: float
    high: float

    @property
    def mean(self) -> float:
        return self.total / self.count

    def absorb(self, other: Bucket) -> None:
        self.step_last = other.step_last
        self.total += other.total
        self.count += other.count
        self.low = _nanmin(self.low, other.low)
        self.high = _nanmax(self.high, other.high)


def _nanmin(a: float, b: float) -> float:
    return b if math.isnan(a) else a if math.isnan(b) else min(a, b)


def _nanmax(a: float, b: float) -> float:
    return b if math.isnan(a) else a if math.isnan(b) else max(a, b)


class Series:
    """One metric over steps, in bounded memory."""

    def __init__(self, recent: int = 1000, buckets: int = 500):
        self.recent: deque[tuple[int, float]] = deque()
        self.buckets: list[Bucket] = []
        self.max_recent, self.max_buckets = recent, buckets
        self.width = 1  # points per bucket for newly folded points
        self._open: Bucket | None = None  # bucket still being filled
        self.count = 0

    def append(self, step: int, value: float) -> None:
        self.recent.append((step, float(value)))
        self.count += 1
        if len(self.recent) > self.max_recent:
            self._fold(*self.recent.popleft())

    def _fold(self, step: int, value: float) -> None:
        point = Bucket(step, step, value, 1, value, value)
        if self._open is None:
            self._open = point
        else:
            self._open.absorb(point)
        if self._open.count >= self.width:
            self.buckets.append(self._open)
            self._open = None
            if len(self.buckets) > self.max_buckets:
                merged = []
                for a, b in zip(self.buckets[0::2], self.buckets[1::2]):
                    a.absorb(b)
                    merged.append(a)
                if len(self.buckets) % 2:
                    merged.append(self.buckets[-1])
                self.buckets = merged
                self.width *= 2

    def snapshot(self) -> dict[str, list]:
        """Plot-ready arrays: step, mean, low, high (equal for full-resolution points); at most
        ``max_buckets + 1 + max_recent`` points, whatever the run length."""
        folded = self.buckets + ([self._open] if self._open else [])
        out: dict[str, list] = {"step": [], "value": [], "low": [], "high": []}
        for b in folded:
            out["step"].append(b.step_last)
            out["value"].append(b.mean)
            out["low"].append(b.low)
            out["high"].append(b.high)
        for step, value in self.recent:
            out["step"].append(step)
            out["value"].append(value)
            out["low"].append(value)
            out["high"].append(value)
        return out

    def last(self) -> tuple[int, float] | None:
        return self.recent[-1] if self.recent else None


class History:
    """Named series; ``record(step, {name: value})`` appends to each."""

    def __init__(self, recent: int = 1000, buckets: int = 500):
        self.series: dict[str, Series] = {}
        self._recent, self._buckets = recent, buckets

    def record(self, step: int, values: dict[str, float]) -> None:
        for name, value in values.items():
            if name not in self.series:
                self.series[name] = Series(self._recent, self._buckets)
            self.series[name].append(step, value)

    def snapshot(self, names: list[str] | None = None) -> dict[str, dict[str, list]]:
        chosen = self.series if names is None else {n: self.series[n] for n in names if n in self.series}
        return {name: s.snapshot() for name, s in chosen.items()}

    def last(self, name: str) -> float | None:
        point = self.series[name].last() if name in self.series else None
        return None if point is None else point[1]
