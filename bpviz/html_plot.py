"""Self-contained HTML reports with inline SVG line charts.

The engine must not depend on plotly, and a comparison's report must open anywhere offline, so the
few charts the headless tools need are drawn here as plain SVG.
"""

from __future__ import annotations

import html
import math
from collections.abc import Sequence

COLOURS = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf"]
#: SVG dash patterns: the 9th to 16th series are dashed, the 17th to 24th dotted (a sweep has 12+)
DASHES = ["", "6 3", "2 2"]
W, H, PAD = 560, 320, 56


def series_style(i: int) -> tuple[str, str]:
    """The ``i``-th series' colour and SVG dash pattern ("" is solid): the same in every chart."""
    return COLOURS[i % len(COLOURS)], DASHES[i // len(COLOURS) % len(DASHES)]


MAX_TICKS = 8


def ticks(lo: float, hi: float, log: bool) -> list[float]:
    """Round tick values: decades on a log axis (every k-th when more than ``MAX_TICKS`` would
    crowd it: a diverged run spans 30 of them), steps of 1, 2 or 5 x 10^k otherwise."""
    if log:
        first, last = math.floor(lo), math.ceil(hi)
        every = max(1, math.ceil((last - first) / MAX_TICKS))
        return [float(10**e) for e in range(first, last + 1, every)]
    raw = (hi - lo) / 5
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 5, 10) if m * mag >= raw)
    start = math.ceil(lo / step) * step
    return [start + i * step for i in range(int((hi - start) / step) + 1)]


def line_chart(
    series: dict[str, tuple[Sequence[float], Sequence[float]]],
    title: str,
    xlabel: str,
    ylabel: str,
    logx: bool = False,
    logy: bool = False,
) -> str:
    """An SVG chart of named (x, y) series; non-finite or non-positive-on-log points are skipped."""

    def tx(v: float, log: bool) -> float | None:
        if not math.isfinite(v) or (log and v <= 0):
            return None
        return math.log10(v) if log else v

    pts = {name: [(tx(x, logx), tx(y, logy)) for x, y in zip(xs, ys)] for name, (xs, ys) in series.items()}
    pts = {name: [(x, y) for x, y in p if x is not None and y is not None] for name, p in pts.items()}
    allx = [x for p in pts.values() for x, _ in p] or [0.0, 1.0]
    ally = [y for p in pts.values() for _, y in p] or [0.0, 1.0]
    x0, x1 = min(allx), max(allx) if max(allx) > min(allx) else min(allx) + 1
    y0, y1 = min(ally), max(ally) if max(ally) > min(ally) else min(ally) + 1

    def sx(x: float) -> float:
        return PAD + (x - x0) / (x1 - x0) * (W - 2 * PAD)

    def sy(y: float) -> float:
        return H - PAD + (y0 - y) / (y1 - y0) * (H - 2 * PAD)

    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{W + 160}" height="{H}"'
        ' font-family="sans-serif" font-size="11">',
        f'<text x="{W / 2}" y="16" text-anchor="middle" font-size="13">{html.escape(title)}</text>',
        f'<rect x="{PAD}" y="{PAD}" width="{W - 2 * PAD}" height="{H - 2 * PAD}" fill="none" stroke="#999"/>',
        f'<text x="{W / 2}" y="{H - 12}" text-anchor="middle">{html.escape(xlabel)}</text>',
        f'<text x="14" y="{H / 2}" text-anchor="middle" transform="rotate(-90 14 {H / 2})">'
        f"{html.escape(ylabel)}</text>",
    ]
    for axis, (lo, hi, log) in (("x", (x0, x1, logx)), ("y", (y0, y1, logy))):
        for t in ticks(lo, hi, log):
            v = math.log10(t) if log else t
            if not lo - 1e-9 <= v <= hi + 1e-9:
                continue
            label = f"{t:g}"
            if axis == "x":
                out.append(f'<text x="{sx(v):.1f}" y="{H - PAD + 14}" text-anchor="middle">{label}</text>')
            else:
                out.append(f'<text x="{PAD - 4}" y="{sy(v) + 4:.1f}" text-anchor="end">{label}</text>')
    for i, (name, p) in enumerate(pts.items()):
        colour, dash = series_style(i)
        stroke = f'fill="none" stroke="{colour}" stroke-width="1.8" stroke-dasharray="{dash}"'
        if p:
            path = " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in p)
            out.append(f'<polyline {stroke} points="{path}"><title>{html.escape(name)}</title></polyline>')
            out.extend(f'<circle cx="{sx(x):.1f}" cy="{sy(y):.1f}" r="2.5" fill="{colour}"/>' for x, y in p)
        y = PAD + 14 * i + 8
        out.append(f'<line x1="{W + 4}" x2="{W + 22}" y1="{y - 4}" y2="{y - 4}" {stroke}/>')
        out.append(f'<text x="{W + 26}" y="{y}" fill="{colour}">{html.escape(name)}</text>')
    out.append("</svg>")
    return "\n".join(out)


def table(rows: list[dict], columns: list[str]) -> str:
    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(_fmt(r.get(c)))}</td>" for c in columns) + "</tr>" for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _fmt(v) -> str:
    return f"{v:.4g}" if isinstance(v, float) else ("" if v is None else str(v))


def page(title: str, parts: list[str]) -> str:
    style = (
        "body{font-family:sans-serif;max-width:900px;margin:2em auto}table{border-collapse:collapse}"
        "td,th{border:1px solid #ccc;padding:2px 6px;font-size:12px}"
    )
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        f"<style>{style}</style></head><body><h1>{html.escape(title)}</h1>{''.join(parts)}</body></html>"
    )
