"""The app's figures, one per panel of ``panels.py``: their traces and what they draw.

Where the panels sit is ``grid.py``'s. Traces are named ``"batch loss"``, ``"κ input · block 3"``, ``"<overlay label> ·
batch loss"``; the browser tests read the page's traces by these names. A κ the local-Hessian report
could only bound is drawn, at the reports where it was one, as an open triangle with "κ ≥" in its
hover (at any length of the trace), and the note above the figure says which blocks and why; so is
an earlier run's mean κ where one of its blocks' was a bound. Marks on the loss panel: where the
step size changed, where the run diverged.
"""

from __future__ import annotations

import html
import time
from typing import TYPE_CHECKING

import ipywidgets as W
import numpy as np
import plotly.graph_objects as go

from .boundary_trace import boundary_traces, update_boundary
from .bounds import bound_marks, hover_bounds, merge_bounds
from .grid import ALL, BOTTOM, BOTTOM_UNTITLED, columns, panel_height, panels_for, x_extent, x_titled
from .hessian_note import hessian_note, note_why
from .overlays import OVERLAY_DASHES, key_html
from .panel_widget import LockedFigureWidget, downsample, keep_state, panel_widget, shown_blocks
from .panels import PALETTE, PANELS, Panel

if TYPE_CHECKING:
    from bpviz.session import TrainingSession

    from .overlays import Overlays

MARKERS_BELOW = 30  # a trace with fewer points also shows markers
FULL_RATE = ("loss",)  # the panels sent at every draw; the others at most every SLOW_PERIOD seconds
SLOW_PERIOD = 0.5


def _hover(name: str, extra: str) -> str:
    return f"{html.escape(name)}<br>step %{{x}}<br>%{{y:.4g}}<extra>{html.escape(extra)}</extra>"


def _hover_spectrum(name: str, extra: str, estimated: bool) -> str:
    """A histogram's hover: its x is log10 λ, not a step."""
    how = " (estimate: stochastic Lanczos quadrature)" if estimated else ""
    count = "≈ %{y:.3g}" if estimated else "%{y:.3g}"
    return f"{html.escape(name)}{how}<br>log10 λ %{{x:.2f}}<br>{count} eigenvalues<extra>{html.escape(extra)}</extra>"


class Figure:
    """The app's panels, one plotly figure each (``grid.py`` says why), reused for every run (each
    FigureWidget is never freed), with the note on the local Hessians above them and the key to
    the lines: the blocks' colours and the earlier runs."""

    def __init__(self) -> None:
        self.widgets = {p.title: panel_widget(p) for p in PANELS}
        self.box = W.GridBox(layout=W.Layout(width="100%", grid_template_columns="1fr 1fr"))
        self.box.add_class("bpviz-plot")
        self.note = W.HTML()
        self.note.add_class("bpviz-hessian-note")
        self.key = W.HTML()  # which line is which block and which run
        self.key.add_class("bpviz-key")
        self.explain = W.HTML()  # what each shown panel means, beside the figure
        self.explain.add_class("bpviz-explain")
        self.view = ALL
        self.present = False
        self._session: TrainingSession | None = None
        self._overlays: Overlays | None = None
        self._panels: list[Panel] = []
        self._keys: dict[str, str] = {}  # trace name -> history series
        self._spectra: dict[int, str] = {}  # block -> its spectrum's trace
        self._overlay_of: dict[str, str] = {}  # trace name -> overlay label
        self._pushed: dict[str, object] = {}  # what each trace last got, so unchanged ones are not sent
        self._bounded: set[str] = set()
        self._why: dict[str, str] = {}  # bound series -> a WHY_BOUND key, from the reports
        self._marks: dict[str, list] = {"lr": [], "diverged": []}  # shapes and labels on the loss panel
        self._x_end = 0.0
        self._drawn_at: dict[str, float] = {}  # panel -> when it was last sent something

    def shown(self) -> list[LockedFigureWidget]:
        """The figures of the shown panels, in their order."""
        return [self.widgets[p.title] for p in self._panels]

    @property
    def data(self) -> tuple:
        """Every trace of the shown panels."""
        return tuple(t for w in self.shown() for t in w.data)

    def new_run(self, session: TrainingSession, overlays: Overlays) -> None:
        """Traces for a new run (and the overlays), and the note on its local Hessians."""
        self._session = session
        self._bounded, self._why = set(), {}
        self._marks = {"lr": [], "diverged": []}
        self.rebuild(overlays)

    def set_height(self, present: bool) -> None:
        self.present = present
        height = panel_height(len(self._panels) or 1, present)
        for widget in self.shown():
            with widget.changing():
                with widget.batch_update():
                    widget.layout.height = height
                    widget.layout.font.size = 14 if present else 12
                keep_state(widget)

    def set_view(self, view: str, overlays: Overlays) -> None:
        self.view = view
        self.rebuild(overlays)

    def rebuild(self, overlays: Overlays) -> None:
        """The shown panels, one set of traces for the current run in each (per shown block) plus
        the overlays, and the key and explanations that go with them."""
        cfg, self._overlays = self._session.cfg, overlays
        self._panels = panels_for(cfg, self.view)
        blocks = shown_blocks(cfg.depth)
        self._keys, self._spectra, self._overlay_of, self._pushed = {}, {}, {}, {}
        height = panel_height(len(self._panels), self.present)
        self._x_end = x_extent(0, cfg.steps)
        for p in self._panels:
            widget = self.widgets[p.title]
            traces = self._traces(p, blocks, overlays)
            with widget.changing():
                with widget.batch_update():
                    widget.data = []
                    widget.layout.height = height
                    widget.layout.font.size = 14 if self.present else 12
                    widget.layout.xaxis.title.text = p.x_title if x_titled(self._panels, p) else ""
                    widget.layout.margin.b = BOTTOM if x_titled(self._panels, p) else BOTTOM_UNTITLED
                    if p.title == "loss":
                        widget.layout.shapes = []
                        widget.layout.annotations = []
                    if p.empty_range is not None:
                        widget.layout.yaxis.update(range=list(p.empty_range), autorange=False)
                    if p.kind == "steps":
                        widget.layout.xaxis.update(range=[0, self._x_end], autorange=False)
                    widget.add_traces(traces)
                keep_state(widget)
        self.box.layout.grid_template_columns = " ".join(["1fr"] * columns(len(self._panels)))
        self.box.children = [self.widgets[p.title] for p in self._panels]
        self._show_key(overlays)
        self._describe()
        items = "".join(f"<li><b>{html.escape(p.title)}</b>: {html.escape(p.explain)}</li>" for p in self._panels)
        self.explain.value = f'<ul style="font-size:12px;color:#333;margin:4px 0;padding-left:18px">{items}</ul>'

    def _traces(self, p: Panel, blocks: list[int], overlays: Overlays) -> list:
        """Panel p's traces: the current run's series, per shown block, and the overlays'."""
        empty = np.zeros(0, np.float32)
        traces = boundary_traces() if p.kind == "boundary" else []
        for s in p.series:
            self._keys[s.name] = s.key
            traces.append(self._line(s.name, dict(color=s.colour), True))
        for i, b in enumerate(blocks):
            for s in p.per_block:
                name = f"{s.name} · block {b}"
                line = self._line(name, dict(color=PALETTE[i % len(PALETTE)], dash=s.dash), False)
                if s.key is None:
                    self._spectra[b] = name
                    line.hovertemplate = _hover_spectrum(name, "current run", estimated=False)
                else:
                    self._keys[name] = s.key.format(block=b)
                traces.append(line)
        for j, ov in enumerate(overlays.items):
            for key in p.overlays:
                name = f"{ov.label} · {key}"
                self._overlay_of[name] = ov.label
                line = dict(color="#888", dash=OVERLAY_DASHES[j % len(OVERLAY_DASHES)], width=1.3)
                visible = True if ov.label in overlays.shown else "legendonly"
                trace = go.Scatter(name=name, mode="lines", line=line, visible=visible, showlegend=False)
                if key.startswith("spectrum"):
                    x, y = ov.spectrum or (empty, empty)
                    trace.update(hovertemplate=_hover_spectrum(name, ov.label, ov.spectrum_estimated))
                else:
                    x, y = ov.series.get(key, (empty, empty))
                    bound = ov.bounds.get(key)
                    if bound is not None and bound.any():
                        trace.update(mode="lines+markers", hovertemplate=hover_bounds(name, ov.label))
                        trace.update(bound_marks(bound, 0))
                    else:
                        trace.update(hovertemplate=_hover(name, ov.label))
                traces.append(trace.update(x=x, y=y))
        return traces

    @staticmethod
    def _line(name: str, line: dict, legend: bool) -> go.Scatter:
        empty = np.zeros(0, np.float32)
        return go.Scatter(
            x=empty,
            y=empty,
            name=name,
            mode="lines+markers",
            line=line,
            marker=dict(size=5),
            showlegend=legend,
            hovertemplate=_hover(name, "current run"),
        )

    def _show_key(self, overlays: Overlays) -> None:
        self.key.value = key_html(overlays, shown_blocks(self._session.cfg.depth), self._lrs())

    def _lrs(self) -> list[float]:
        history = self._session.history.snapshot(["lr"]) if self._session else {}
        return history["lr"]["value"] if "lr" in history else []

    def show_overlays(self, overlays: Overlays) -> None:
        """Show the selected earlier runs; the others stay in the key, marked hidden."""
        for widget in self.shown():
            with widget.changing(), widget.batch_update():
                for trace in widget.data:
                    if trace.name in self._overlay_of:
                        trace.visible = True if self._overlay_of[trace.name] in overlays.shown else "legendonly"
                keep_state(widget)
        self._show_key(overlays)
        self._describe()

    def mark_divergence(self, step: int) -> None:
        """A line and a label at the step where the run diverged, in the loss panel; the traces end
        at their last finite values (plotly leaves NaN out)."""
        self._marks["diverged"] = [(step, f"diverged at step {step}", dict(color="#D55E00", dash="dash", width=1.5))]
        self._draw_marks()

    def _mark_lr_changes(self, history: dict) -> bool:
        """A dotted line where the step size changed, labelled with the new one."""
        lr = history.get("lr")
        if lr is None or len(lr["step"]) < 2:
            return False
        changes = [(s, v) for i, (s, v) in enumerate(zip(lr["step"], lr["value"])) if i and v != lr["value"][i - 1]]
        marks = [(s, f"lr {v:.3g}", dict(color="#555", dash="dot", width=1)) for s, v in changes]
        if marks == self._marks["lr"]:
            return False
        self._marks["lr"] = marks
        return True

    def _draw_marks(self) -> None:
        if not any(p.title == "loss" for p in self._panels):
            return
        widget = self.widgets["loss"]
        shapes, labels = [], []
        for step, text, line in self._marks["lr"] + self._marks["diverged"]:
            shapes.append(dict(type="line", x0=step, x1=step, y0=0, y1=1, xref="x", yref="y domain", line=line))
            labels.append(
                dict(text=text, name="mark", x=step, y=1, xref="x", yref="y domain", xanchor="right", yanchor="top")
                | dict(showarrow=False, textangle=0, font=dict(size=10, color=line["color"]))
            )
        with widget.changing():
            with widget.batch_update():
                widget.layout.shapes = shapes
                widget.layout.annotations = labels
            keep_state(widget)

    def draw(self, snapshot: dict, report: dict | None) -> bool:
        """Send what changed since the last draw to the panels it is in: the loss panel at every
        draw, the others when they last got something ``SLOW_PERIOD`` s ago or more (each panel's
        update is a redraw in the page, and the page's time is what bounds the rate the loss curve
        streams at). False if nothing was sent."""
        history = snapshot["history"]
        note_why(report, self._why)
        x_end = x_extent(int(snapshot["step"]), self._session.cfg.steps)
        x_range, self._x_end = x_end != self._x_end, x_end
        sent = self._mark_lr_changes(history)
        if sent:
            self._draw_marks()
        now = time.monotonic()
        for p in self._panels:
            widened = x_range and p.kind == "steps"
            if (
                not widened
                and p.title not in FULL_RATE
                and now - self._drawn_at.get(p.title, -SLOW_PERIOD) < SLOW_PERIOD
            ):
                continue
            if self._draw_panel(p, history, report, snapshot.get("boundary"), widened):
                self._drawn_at[p.title] = now
                sent = True
        return sent

    def _series_updates(self, widget: LockedFigureWidget, history: dict) -> tuple[dict, bool]:
        """{trace: (x, y, mode)} for the panel's traces whose series changed, and whether a trace
        was marked a lower bound just now."""
        updates, bounded = {}, False
        for trace in widget.data:
            key = self._keys.get(trace.name)
            if key is None:
                continue
            series = history.get(key)
            if key.startswith("cond/"):
                series, new = self._with_bounds(trace, key, history)
                bounded = bounded or new
            if series is None:
                continue
            last = series["step"][-1] if series["step"] else -1
            if self._pushed.get(trace.name) == (last, len(series["step"])):
                continue
            x, y = downsample(series["step"], series["value"])
            # markers while a trace is short: a run that diverged after a few steps stays visible
            short, marks = len(x) <= MARKERS_BELOW, None
            if "bound" in series:
                marks = bound_marks(downsample(series["step"], series["bound"])[1] > 0.5, 5 if short else 0)
            updates[trace.name] = x, y, "lines+markers" if short or marks else "lines", marks
            self._pushed[trace.name] = (last, len(series["step"]))
        return updates, bounded

    def _draw_panel(self, p: Panel, history: dict, report: dict | None, boundary: dict | None, widened: bool) -> bool:
        """Panel p's part of a draw, one update of its figure; False if it had nothing new."""
        widget = self.widgets[p.title]
        if p.kind == "boundary":
            if boundary is None or self._pushed.get("boundary") == boundary["step"]:
                return False
            once = "boundary" not in self._pushed  # the grid's place and the points: sent once a run
            self._pushed["boundary"] = boundary["step"]
            with widget.changing(), widget.batch_update():
                update_boundary(widget.data, boundary)
        else:
            updates, once = self._series_updates(widget, history)
            spectra = self._new_spectra(report) if p.kind == "spectrum" else {}
            if updates or spectra or widened:
                with widget.changing(), widget.batch_update():
                    once = self._apply(p, widget, updates, spectra, widened) or once
            elif not once:
                return False
        if once:  # a property sent only this once changed: keep it for pages that connect later
            with widget.changing():
                keep_state(widget)
        return True

    def _apply(self, p: Panel, widget: LockedFigureWidget, updates: dict, spectra: dict, widened: bool) -> bool:
        """Put a draw's series into panel p (inside its batch update); whether a property sent once changed."""
        once = widened
        if widened:
            widget.layout.xaxis.update(range=[0, self._x_end], autorange=False)
        if p.empty_range is not None and any(s.name in updates for s in p.series):
            widget.layout.yaxis.update(autorange=True, range=None)  # None: the next run sets its range anew
        for trace in widget.data:
            if trace.name in updates:
                trace.x, trace.y, mode, marks = updates[trace.name]
                if marks:
                    trace.update(marks)
                if trace.mode != mode:
                    trace.mode, once = mode, True
            elif trace.name in spectra:
                trace.x, trace.y, estimated = spectra[trace.name]
                if estimated and trace.line.dash != "dashdot":
                    once = True
                    trace.line.dash = "dashdot"
                    trace.hovertemplate = _hover_spectrum(trace.name, "current run", estimated=True)
        return once

    def _with_bounds(self, trace, key: str, history: dict) -> tuple[dict | None, bool]:
        """A κ the report could only bound is recorded as ``cond_lower_bound/...``, and a block's κ can
        be exact at one report and a bound at the next (the zero floor): its trace then draws both,
        the bounds as open triangles with "κ ≥" in the hover (``bound_marks``), and the note above the
        figure says why. The series to draw (with ``bound`` per point), and whether the trace was
        marked just now."""
        bound = key.replace("cond/", "cond_lower_bound/", 1)
        if bound not in history:
            return history.get(key), False
        series = merge_bounds(history.get(key), history[bound])
        new = bound not in self._bounded
        if new:
            self._bounded.add(bound)
            trace.hovertemplate = hover_bounds(trace.name, "current run")
            self._describe()
        return series, new

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
        text = hessian_note(self._session, self._bounded, self._why, self._overlays)
        self.note.value = f'<span style="color:#555;font-size:12px">{html.escape(text)}</span>'
