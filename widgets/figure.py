"""The app's one plotly figure, built from the panels of ``panels.py``: its traces and what they draw.

Where the panels sit is ``grid.py``'s. Traces are named ``"batch loss"``, ``"κ input · block 3"``, ``"<overlay label> ·
batch loss"``; the browser tests read the page's traces by these names. A κ the local-Hessian report
could only bound is drawn as open triangles with "κ ≥" in its hover, and the note above the figure
says which blocks. Marks on the loss panel: where the step size changed, where the run diverged.
"""

from __future__ import annotations

import html
import threading
from collections.abc import Sequence
from copy import deepcopy
from typing import TYPE_CHECKING

import ipywidgets as W
import numpy as np
import plotly.graph_objects as go

from .boundary_trace import boundary_traces, update_boundary
from .grid import ALL, HEIGHTS, axis_name, axis_ref, base_layout, grid, panels_for, x_extent
from .panels import PALETTE, PANELS, Panel
from .plotly_once import FigureWidget

if TYPE_CHECKING:
    from bpviz.session import TrainingSession

    from .overlays import Overlays

MAX_BLOCK_TRACES = 8  # blocks drawn per panel (spread over the depth)
MAX_POINTS = 200  # points per trace per update: bounds the bytes one update sends
MARKERS_BELOW = 30  # a trace with fewer points also shows markers
#: earlier runs are grey, each with its own dash (the key above the figure shows which is which)
OVERLAY_DASHES = ("dash", "dot", "dashdot", "longdash", "longdashdot", "6px,2px,1px,2px")


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


class LockedFigureWidget(FigureWidget):
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


def _hover(name: str, extra: str) -> str:
    return f"{html.escape(name)}<br>step %{{x}}<br>%{{y:.4g}}<extra>{html.escape(extra)}</extra>"


class Figure:
    """The one figure of the app, reused for every run (each FigureWidget ships megabytes to the
    browser and is never freed), with the note on the local Hessians above it and the key to the
    earlier runs."""

    def __init__(self) -> None:
        self.widget = LockedFigureWidget(layout=base_layout())
        # plotly's widget re-fits its width to the window only when told so: under anywidget (Voila)
        # no resize message reaches it, so a window made narrower would cut the figure off
        self.widget._config = {**self.widget._config, "responsive": True}
        self.widget.add_class("bpviz-figure")
        self.box = W.Box([self.widget], layout=W.Layout(width="100%"))
        self.box.add_class("bpviz-plot")
        self.note = W.HTML()
        self.note.add_class("bpviz-hessian-note")
        self.key = W.HTML()  # which line is which run
        self.key.add_class("bpviz-key")
        self.explain = W.HTML()  # what each shown panel means, beside the figure
        self.explain.add_class("bpviz-explain")
        self.view = ALL
        self._session: TrainingSession | None = None
        self._panels: list[Panel] = []
        self._keys: dict[str, str] = {}  # trace name -> history series
        self._spectra: dict[int, str] = {}  # block -> its spectrum's trace
        self._overlay_of: dict[str, str] = {}  # trace name -> overlay label
        self._pushed: dict[str, object] = {}  # what each trace last got, so unchanged ones are not sent
        self._bounded: set[str] = set()
        self._marks: dict[str, list] = {"lr": [], "diverged": []}  # shapes and labels on the loss panel
        self._x_end = 0.0

    def new_run(self, session: TrainingSession, overlays: Overlays) -> None:
        """Traces for a new run (and the overlays), and the note on its local Hessians."""
        self._session = session
        self._bounded = set()
        self._marks = {"lr": [], "diverged": []}
        self.rebuild(overlays)
        self._describe()

    def set_height(self, present: bool) -> None:
        with self.widget.changing():
            with self.widget.batch_update():
                self.widget.layout.height = HEIGHTS[present]
                self.widget.layout.font.size = 14 if present else 12
            self._keep_state()

    def _keep_state(self) -> None:
        """The figure now is also the state a page that connects later starts from: a FigureWidget
        inside a Box keeps the state it was created with (Voila renders after the notebook ran), and
        only later deltas would reach such a page, which would start from an empty plot. Kept again
        whenever a property that is sent once changes (the decision boundary's grid and points, a
        trace's mode, marks): the series sent at every draw bring themselves up to date."""
        self.widget._widget_data = deepcopy(self.widget._data)
        self.widget._widget_layout = deepcopy(self.widget._layout_obj._props)

    def set_view(self, view: str, overlays: Overlays) -> None:
        self.view = view
        self.rebuild(overlays)

    def rebuild(self, overlays: Overlays) -> None:
        """The shown panels' axes, one set of traces for the current run (per shown block) plus the
        overlays, and the key and explanations that go with them."""
        cfg = self._session.cfg
        self._panels = panels_for(cfg, self.view)
        index = {p.title: i for i, p in enumerate(PANELS)}
        blocks = shown_blocks(cfg.depth)
        self._keys, self._spectra, self._overlay_of, self._pushed = {}, {}, {}, {}
        empty = np.zeros(0, np.float32)
        traces = []
        for p in self._panels:
            axes = dict(xaxis=axis_ref(index[p.title], "x"), yaxis=axis_ref(index[p.title], "y"))
            if p.kind == "boundary":
                traces += [t.update(**axes) for t in boundary_traces()]
            for s in p.series:
                self._keys[s.name] = s.key
                traces.append(self._line(s.name, axes, dict(color=s.colour), True))
            for i, b in enumerate(blocks):
                for s in p.per_block:
                    name = f"{s.name} · block {b}"
                    if s.key is None:
                        self._spectra[b] = name
                    else:
                        self._keys[name] = s.key.format(block=b)
                    traces.append(self._line(name, axes, dict(color=PALETTE[i % len(PALETTE)], dash=s.dash), s.legend))
            for j, ov in enumerate(overlays.items):
                for key in p.overlays:
                    name = f"{ov.label} · {key}"
                    self._overlay_of[name] = ov.label
                    x, y = (
                        ov.spectrum if key.startswith("spectrum") and ov.spectrum else ov.series.get(key, (empty,) * 2)
                    )
                    line = dict(color="#888", dash=OVERLAY_DASHES[j % len(OVERLAY_DASHES)], width=1.3)
                    visible = True if ov.label in overlays.shown else "legendonly"
                    traces.append(
                        go.Scatter(
                            x=x, y=y, name=name, mode="lines", line=line, visible=visible, showlegend=False
                        ).update(hovertemplate=_hover(name, ov.label), **axes)
                    )
        updates, titles = grid(self._panels)
        with self.widget.changing():
            with self.widget.batch_update():
                self.widget.data = []
                self.widget.layout.update(updates)
                self.widget.layout.annotations = titles
                self.widget.layout.shapes = []
                self._hold_empty_ranges()
                self._x_end = 0.0
                self._set_x_range(0)
                self.widget.add_traces(traces)
            self._keep_state()
        self._show_key(overlays)
        items = "".join(f"<li><b>{html.escape(p.title)}</b>: {html.escape(p.explain)}</li>" for p in self._panels)
        self.explain.value = f'<ul style="font-size:12px;color:#333;margin:4px 0;padding-left:18px">{items}</ul>'

    def _line(self, name: str, axes: dict, line: dict, legend: bool) -> go.Scatter:
        empty = np.zeros(0, np.float32)
        return go.Scatter(
            x=empty,
            y=empty,
            name=name,
            mode="lines+markers",
            line=line,
            marker=dict(size=5),
            legendgroup=name.split(" · ")[-1],
            showlegend=legend,
            hovertemplate=_hover(name, "current run"),
            **axes,
        )

    def _show_key(self, overlays: Overlays) -> None:
        """Which line is which run, in words a student can check against the settings."""
        rows = [f"<b>solid, coloured</b>: {html.escape(overlays.current_label(self._lrs()))}"]
        for j, ov in enumerate(overlays.items):
            dash = {"dash": "6,3", "dot": "1,3", "dashdot": "6,3,1,3", "longdash": "10,3", "longdashdot": "10,3,1,3"}
            pattern = dash.get(OVERLAY_DASHES[j % len(OVERLAY_DASHES)], "6,2,1,2")
            sample = (
                f'<svg width="28" height="8"><line x1="0" y1="4" x2="28" y2="4" stroke="#888" '
                f'stroke-width="1.5" stroke-dasharray="{pattern}"/></svg>'
            )
            hidden = "" if ov.label in overlays.shown else " (hidden)"
            rows.append(f"{sample} {html.escape(ov.label)}{hidden}")
        self.key.value = '<div style="font-size:12px;color:#333;line-height:1.4">' + "<br>".join(rows) + "</div>"

    def _lrs(self) -> list[float]:
        history = self._session.history.snapshot(["lr"]) if self._session else {}
        return history["lr"]["value"] if "lr" in history else []

    def show_overlays(self, overlays: Overlays) -> None:
        """Show the selected earlier runs; the others stay in the key, marked hidden."""
        with self.widget.changing(), self.widget.batch_update():
            for trace in self.widget.data:
                if trace.name in self._overlay_of:
                    trace.visible = True if self._overlay_of[trace.name] in overlays.shown else "legendonly"
            self._keep_state()
        self._show_key(overlays)

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
        loss = next((i for i, p in enumerate(PANELS) if p.title == "loss"), 0)
        if PANELS[loss] not in self._panels:
            return
        x, y = axis_ref(loss, "x"), f"{axis_ref(loss, 'y')} domain"
        shapes, labels = [], [a for a in self.widget.layout.annotations if a.name not in ("mark",)]
        for step, text, line in self._marks["lr"] + self._marks["diverged"]:
            shapes.append(dict(type="line", x0=step, x1=step, y0=0, y1=1, xref=x, yref=y, line=line))
            labels.append(
                dict(text=text, name="mark", x=step, y=1, xref=x, yref=y, xanchor="right", yanchor="top")
                | dict(showarrow=False, textangle=0, font=dict(size=10, color=line["color"]))
            )
        with self.widget.changing():
            with self.widget.batch_update():
                self.widget.layout.shapes = shapes
                self.widget.layout.annotations = labels
            self._keep_state()

    def _yaxis_name(self, p: Panel):
        return self.widget.layout[axis_name(PANELS.index(p), "y")]

    def _hold_empty_ranges(self) -> None:
        """Panels with an ``empty_range`` show it until their first point arrives (then autorange)."""
        for p in self._panels:
            if p.empty_range is not None:
                self._yaxis_name(p).update(range=list(p.empty_range), autorange=False)

    def _set_x_range(self, step: int) -> bool:
        """Widen the step axes to what ``step`` needs; whether they changed."""
        end = x_extent(step, self._session.cfg.steps)
        if end == self._x_end:
            return False
        self._x_end = end
        for i, p in enumerate(PANELS):
            if p.kind == "steps" and p in self._panels:
                self.widget.layout[axis_name(i, "x")].update(range=[0, end], autorange=False)
        return True

    def draw(self, snapshot: dict, report: dict | None) -> bool:
        """Send the series that changed since the last draw; False if nothing had."""
        history = snapshot["history"]
        updates, bounded = {}, len(self._bounded)
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
        boundary = snapshot.get("boundary")
        new_boundary = boundary is not None and self._pushed.get("boundary") != boundary["step"]
        lr_marks = self._mark_lr_changes(history)
        if not (updates or spectra or new_boundary or lr_marks):
            return False
        if lr_marks:
            self._draw_marks()
        once = len(self._bounded) > bounded  # whether a property sent only this once changed (_keep_state)
        with self.widget.changing(), self.widget.batch_update():
            once = self._set_x_range(int(snapshot["step"]))
            for p in self._panels:
                if p.empty_range is not None and any(s.name in updates for s in p.series):
                    self._yaxis_name(p).autorange = True
            for trace in self.widget.data:
                if trace.name in updates:
                    trace.x, trace.y, mode = updates[trace.name]
                    if trace.mode != mode:
                        trace.mode, once = mode, True
                elif trace.name in spectra:
                    trace.x, trace.y, estimated = spectra[trace.name]
                    if estimated and trace.line.dash != "dashdot":
                        once = True
                        trace.line.dash = "dashdot"
                        trace.hovertemplate = (
                            f"{html.escape(trace.name)} (estimate: stochastic Lanczos quadrature)"
                            "<br>log10 λ %{x:.2f}<br>≈ %{y:.3g} eigenvalues<extra></extra>"
                        )
        if new_boundary:  # an update of its own: plotly merges one batch's changes per property
            once = once or "boundary" not in self._pushed  # the grid's place and the points: once a run
            self._pushed["boundary"] = boundary["step"]
            with self.widget.changing(), self.widget.batch_update():
                update_boundary(self.widget.data, boundary)
        if once:
            with self.widget.changing():
                self._keep_state()
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
