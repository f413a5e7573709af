"""The app's one plotly figure, built from the panels of ``panels.py``: its traces and what they draw.

Each panel says where it sits, its axes, and its series: the current run's, one trace per shown
block (``key`` holds ``{block}``), and those of earlier runs drawn behind them. Traces are named
``"batch loss"``, ``"κ input · block 3"``, ``"<overlay label> · batch loss"``; the browser tests
read the page's traces by these names. A κ the local-Hessian report could only bound is drawn as
open triangles with "κ ≥" in its hover, and the note above the figure says which blocks.
"""

from __future__ import annotations

import html
import threading
from collections.abc import Collection, Sequence
from copy import deepcopy
from typing import TYPE_CHECKING

import ipywidgets as W
import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from .panels import PALETTE, PANELS, Panel

if TYPE_CHECKING:
    from bpviz.session import TrainingSession

    from .overlays import Overlay

MAX_BLOCK_TRACES = 8  # blocks drawn per panel (spread over the depth)
MAX_POINTS = 200  # points per trace per update: bounds the bytes one update sends
MARKERS_BELOW = 30  # a trace with fewer points also shows markers


def downsample(steps: Sequence, values: Sequence, n: int = MAX_POINTS) -> tuple[np.ndarray, np.ndarray]:
    """At most n points, evenly spread, last point kept; float32 so plotly sends binary buffers."""
    x, y = np.asarray(steps, np.float32), np.asarray(values, np.float32)
    if len(x) > n:
        idx = np.unique(np.linspace(0, len(x) - 1, n).round().astype(int))
        x, y = x[idx], y[idx]
    return x, y


def shown_blocks(depth: int) -> list[int]:
    """Which blocks get their own traces: all of a shallow net, an even spread of a deep one."""
    return sorted(set(np.linspace(0, depth - 1, min(depth, MAX_BLOCK_TRACES)).round().astype(int).tolist()))


ROWS, COLS = max(p.cell[0] for p in PANELS), max(p.cell[1] for p in PANELS)


class LockedFigureWidget(go.FigureWidget):
    """A FigureWidget that the app thread changes only while no page message is being applied.

    Applying a page message holds trait notifications, and traitlets merges the changes made
    meanwhile, from any thread: plotly's ``_py2js_update = message; _py2js_update = None`` from the
    app thread would reach the page as None, and that update would be lost."""

    def __init__(self, *args, **kwargs):
        self._state_lock = threading.RLock()
        super().__init__(*args, **kwargs)

    def set_state(self, sync_data: dict) -> None:
        with self._state_lock:
            super().set_state(sync_data)

    def changing(self):
        """Hold this while changing the figure (around ``batch_update``)."""
        return self._state_lock


def _layout() -> go.Figure:
    titles = [
        next((p.title for p in PANELS if p.cell == (r, c)), "") for r in range(1, ROWS + 1) for c in range(1, COLS + 1)
    ]
    fig = make_subplots(rows=ROWS, cols=COLS, subplot_titles=titles, vertical_spacing=0.09, horizontal_spacing=0.13)
    fig.update_layout(
        height=820,
        margin=dict(l=50, r=10, t=40, b=40),
        uirevision="keep",
        legend=dict(font=dict(size=10)),
        hovermode="closest",
    )
    for p in PANELS:
        r, c = p.cell
        fig.update_xaxes(title_text=p.x_title, row=r, col=c)
        fig.update_yaxes(title_text=p.y_title, type=p.y_type, row=r, col=c, **p.y_axis)
        axis = (r - 1) * COLS + c
        ref = "" if axis == 1 else str(axis)
        for note in p.notes:
            fig.add_annotation(**{"xref": f"x{ref} domain", "yref": f"y{ref} domain", "showarrow": False, **note})
    return fig


def _hover(name: str, extra: str) -> str:
    return f"{html.escape(name)}<br>step %{{x}}<br>%{{y:.4g}}<extra>{html.escape(extra)}</extra>"


class Figure:
    """The one figure of the app, reused for every run (each FigureWidget ships megabytes to the
    browser and is never freed), with the note on the local Hessians above it."""

    def __init__(self) -> None:
        self.widget = LockedFigureWidget(_layout())
        self.widget.add_class("bpviz-figure")
        self.box = W.Box([self.widget], layout=W.Layout(width="100%"))
        self.box.add_class("bpviz-plot")
        self.note = W.HTML()
        self.note.add_class("bpviz-hessian-note")
        # what each panel shows, beside the figure: a student reads it next to the curves
        items = "".join(f"<li><b>{html.escape(p.title)}</b>: {html.escape(p.explain)}</li>" for p in PANELS)
        self.explain = W.HTML(f'<ul style="font-size:12px;color:#333;margin:4px 0;padding-left:18px">{items}</ul>')
        self.explain.add_class("bpviz-explain")
        self._session: TrainingSession | None = None
        self._keys: dict[str, str] = {}  # trace name -> history series
        self._spectra: dict[int, str] = {}  # block -> its spectrum's trace
        self._overlay_of: dict[str, str] = {}  # trace name -> overlay label
        self._pushed: dict[str, object] = {}  # what each trace last got, so unchanged ones are not sent
        self._bounded: set[str] = set()

    def new_run(self, session: TrainingSession, overlays: Sequence[Overlay], shown: Collection[str]) -> None:
        """Traces for a new run (and the overlays), and the note on its local Hessians."""
        self._session = session
        self._bounded = set()
        self.rebuild(overlays, shown)
        self._describe()

    def rebuild(self, overlays: Sequence[Overlay], shown: Collection[str]) -> None:
        """One set of traces for the current run (per shown block) plus the overlays."""
        cfg = self._session.cfg
        blocks = shown_blocks(cfg.depth)
        self._keys, self._spectra, self._overlay_of, self._pushed = {}, {}, {}, {}
        empty = np.zeros(0, np.float32)
        traces = []
        for p in PANELS:
            for s in p.series:
                self._keys[s.name] = s.key
                traces.append((p, s.name, dict(color=s.colour), True))
        for i, b in enumerate(blocks):
            for p in PANELS:
                for s in p.per_block:
                    name = f"{s.name} · block {b}"
                    if s.key is None:
                        self._spectra[b] = name
                    else:
                        self._keys[name] = s.key.format(block=b)
                    traces.append((p, name, dict(color=PALETTE[i % len(PALETTE)], dash=s.dash), s.legend))
        with self.widget.changing():
            with self.widget.batch_update():
                self.widget.data = []
                self.widget.layout.shapes = []  # an earlier run's divergence mark
                self._hold_empty_ranges()
                self.widget.layout.annotations = [a for a in self.widget.layout.annotations if a.name != "diverged"]
                for p, name, line, legend in traces:
                    self.widget.add_trace(
                        go.Scatter(
                            x=empty,
                            y=empty,
                            name=name,
                            mode="lines+markers",
                            line=line,
                            marker=dict(size=5),
                            legendgroup=name.split(" · ")[-1],
                            showlegend=legend,
                            hovertemplate=_hover(name, "current run"),
                        ),
                        row=p.cell[0],
                        col=p.cell[1],
                    )
                for ov in overlays:
                    for p in PANELS:
                        for key in p.overlays:
                            name = f"{ov.label} · {key}"
                            self._overlay_of[name] = ov.label
                            x, y = ov.series.get(key, (empty, empty))
                            self.widget.add_trace(
                                go.Scatter(
                                    x=x,
                                    y=y,
                                    name=name,
                                    mode="lines",
                                    line=dict(color="#999", dash="dash", width=1),
                                    visible=True if ov.label in shown else "legendonly",
                                    hovertemplate=_hover(name, ov.label),
                                ),
                                row=p.cell[0],
                                col=p.cell[1],
                            )
            hint = next(a for a in self.widget.layout.annotations if a.name == "sa-sgd-hint")
            hint.visible = cfg.optimizer != "sa_sgd"
            # the traces are also the state a page that connects later starts from: a FigureWidget
            # inside a Box keeps the state it was created with (Voila renders after the notebook ran), and
            # only later deltas would reach such a page, which would start from an empty plot
            self.widget._widget_data = deepcopy(self.widget._data)
            self.widget._widget_layout = deepcopy(self.widget._layout_obj._props)

    def mark_divergence(self, step: int) -> None:
        """A red line and a label at the step where the run diverged, in the loss panel; the traces
        end at their last finite values (plotly leaves NaN out)."""
        with self.widget.changing(), self.widget.batch_update():
            line = dict(color="#D55E00", dash="dash", width=1.5)
            self.widget.add_shape(type="line", x0=step, x1=step, y0=0, y1=1, xref="x", yref="y domain", line=line)
            self.widget.add_annotation(
                text=f"diverged at step {step}",
                name="diverged",
                x=step,
                xref="x",
                yref="y domain",
                y=1,
                xanchor="right",
                yanchor="top",
                showarrow=False,
                font=dict(size=11, color="#D55E00"),
            )

    def show_overlays(self, shown: Collection[str]) -> None:
        """Show the selected earlier runs; the others stay in the legend."""
        with self.widget.changing(), self.widget.batch_update():
            for trace in self.widget.data:
                if trace.name in self._overlay_of:
                    trace.visible = True if self._overlay_of[trace.name] in shown else "legendonly"

    def _y_axis(self, p: Panel):
        n = (p.cell[0] - 1) * COLS + p.cell[1]
        return self.widget.layout["yaxis" if n == 1 else f"yaxis{n}"]

    def _hold_empty_ranges(self) -> None:
        """Panels with an ``empty_range`` show it until their first point arrives (then autorange)."""
        for p in PANELS:
            if p.empty_range is not None:
                self._y_axis(p).update(range=list(p.empty_range), autorange=False)

    def draw(self, history: dict, report: dict | None) -> bool:
        """Send the series that changed since the last draw; False if nothing had."""
        updates = {}
        for trace in self.widget.data:
            key = self._keys.get(trace.name)
            if key is not None and key not in history and key.startswith("cond/"):
                key = self._mark_bound(trace, key, history)
            if key is None or key not in history:
                continue
            series = history[key]
            last = series["step"][-1] if series["step"] else -1
            if self._pushed.get(trace.name) == (last, len(series["step"])):
                continue
            x, y = downsample(series["step"], series["value"])
            # markers while a trace is short: a run that diverged after a few steps stays visible
            updates[trace.name] = x, y, "lines+markers" if len(x) <= MARKERS_BELOW else "lines"
            self._pushed[trace.name] = (last, len(series["step"]))
        spectra = self._new_spectra(report)
        if not updates and not spectra:
            return False
        with self.widget.changing(), self.widget.batch_update():
            for p in PANELS:
                if p.empty_range is not None and any(s.name in updates for s in p.series):
                    self._y_axis(p).autorange = True
            for trace in self.widget.data:
                if trace.name in updates:
                    trace.x, trace.y, mode = updates[trace.name]
                    if trace.mode != mode:
                        trace.mode = mode
                elif trace.name in spectra:
                    trace.x, trace.y, estimated = spectra[trace.name]
                    if estimated:
                        trace.line.dash = "dashdot"
                        trace.hovertemplate = (
                            f"{html.escape(trace.name)} (estimate: stochastic Lanczos quadrature)"
                            "<br>log10 λ %{x:.2f}<br>≈ %{y:.3g} eigenvalues<extra></extra>"
                        )
        return True

    def _mark_bound(self, trace, key: str, history: dict) -> str | None:
        """A κ the report could only bound is recorded as ``cond_lower_bound/...``: its trace then
        says "κ ≥" in the hover and shows open triangles, and the note above the figure says why."""
        bound = key.replace("cond/", "cond_lower_bound/", 1)
        if bound not in history:
            return None
        if bound not in self._bounded:
            self._bounded.add(bound)
            trace.marker.symbol = "triangle-up-open"
            trace.hovertemplate = (
                f"{html.escape(trace.name)} (lower bound)<br>step %{{x}}<br>κ ≥ %{{y:.4g}}<extra>current run</extra>"
            )
            self._describe()
        return bound

    def _new_spectra(self, report: dict | None) -> dict:
        """The input-Hessian spectra of a report not drawn yet: {trace: (centres, counts, estimated)}."""
        if report is None or self._pushed.get("report") == report["step"]:
            return {}
        self._pushed["report"] = report["step"]
        edges = np.asarray(report["hist_edges"], np.float32)
        centres = (edges[:-1] + edges[1:]) / 2
        return {
            self._spectra[s["block"]]: (centres, np.asarray(s["hist_counts"], np.float32), s["method"] != "exact")
            for s in report["stats"]
            if s["wrt"] == "input" and s["block"] in self._spectra
        }

    def _describe(self) -> None:
        """Say on which samples the local Hessians are computed, and which numbers are bounds."""
        s = self._session
        n, batch = s.probe_samples, s.cfg.batch_size
        bn = " (batch norm's statistics over these)" if s.cfg.batch_norm else ""
        same = "the training batch size" if n == batch else f"training batches have {batch}"
        text = f"Local Hessians on the first {n} training samples{bn}; {same}."
        if self._bounded:
            blocks = sorted({int(k.rsplit("/", 1)[1]) for k in self._bounded})
            text += (
                f" △ κ ≥: lower bounds (blocks {', '.join(map(str, blocks))}: the exact spectrum is too "
                "large to refresh live; Krylov bounds, certified) and their spectra are estimates."
            )
        else:
            text += " Every κ shown is exact."
        self.note.value = f'<span style="color:#555;font-size:12px">{html.escape(text)}</span>'
