"""The bpviz dashboard: controls on the left, one live plotly figure on the right.

Data flows one way: the controls describe a ``RunConfig``; a ``TrainingSession`` trains it and keeps
a bounded history; one UI thread (the publisher) reads the session's snapshot at most ``max_rate``
times a second and redraws the figure inside ``batch_update``, no faster than the page takes the
updates (``PageFlow``). Widget callbacks only queue commands for that thread, so no callback ever
waits for training, and exactly one thread writes to the figure.
One FigureWidget is created per app and reused for every run (each instance ships megabytes to the
browser and is never freed).
"""

from __future__ import annotations

import html
import json
import os
import queue
import threading
import time
from contextlib import contextmanager
from copy import deepcopy
from pathlib import Path

import ipywidgets as W
import numpy as np
import plotly.graph_objects as go
import torch
from plotly.subplots import make_subplots

from bpviz.config import ConfigError, RunConfig
from bpviz.optim import ALGORITHMS, Option
from bpviz.presets import PRESETS
from bpviz.runs import list_runs, load_run
from bpviz.session import ENDED, State, TrainingSession

#: settings the page may not set: they name files or machine resources
SERVER_ONLY = ("data_dir", "device", "num_threads")
ARCHITECTURE = ("dataset", "arch", "depth", "width", "activation", "init", "init_std", "batch_norm", "skip",
                "optimizer", "batch_size", "seed", "noise", "dtype")
MAX_BLOCK_TRACES = 8  # blocks drawn per panel (spread over the depth)
MAX_POINTS = 200  # points per trace per update: bounds the bytes one update sends
MAX_OVERLAYS = 6
MARKERS_BELOW = 30  # a trace with fewer points also shows markers
HEARTBEAT_TIMEOUT = 60.0  # seconds without a page heartbeat before a running session is stopped
ACK_TIMEOUT = 3.0  # seconds an unanswered figure update holds the next one back, at most


def _downsample(steps: list, values: list, n: int = MAX_POINTS) -> tuple[np.ndarray, np.ndarray]:
    """At most n points, evenly spread, last point kept; float32 so plotly sends binary buffers."""
    x, y = np.asarray(steps, np.float32), np.asarray(values, np.float32)
    if len(x) > n:
        idx = np.unique(np.linspace(0, len(x) - 1, n).round().astype(int))
        x, y = x[idx], y[idx]
    return x, y


def shown_blocks(depth: int) -> list[int]:
    """Which blocks get their own traces: all of a shallow net, an even spread of a deep one."""
    return sorted(set(np.linspace(0, depth - 1, min(depth, MAX_BLOCK_TRACES)).round().astype(int).tolist()))


def option_widget(name: str, option: Option, value) -> W.Widget:
    """A control for one optimizer option, built from its declaration (type, choices, bounds, help)."""
    common = dict(description=name, description_allow_html=False, tooltip=option.help,
                  style={"description_width": "90px"}, value=value)
    if option.choices is not None:
        return W.Dropdown(options=list(option.choices), **common)
    if isinstance(option.default, bool):
        return W.Checkbox(indent=False, **{k: v for k, v in common.items() if k != "style"})
    if isinstance(option.default, int):
        return W.BoundedIntText(min=int(option.lo if option.lo is not None else 0),
                                max=int(option.hi if option.hi is not None else 10**6), **common)
    return W.FloatText(**common)  # bounds (some strict) are checked by the config, with a message


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
        return (self.pong.value < 0 or self.ping.value - self.pong.value < self.in_flight
                or time.monotonic() - self._sent_at > self.timeout)

    def sent(self) -> None:
        """Call right after sending a figure update (from the same thread, so the ping follows it)."""
        self._sent_at = time.monotonic()
        self.ping.value += 1


def describe_difference(old: RunConfig, new: RunConfig) -> str:
    """A short label for a past run by what differs from the current settings ("BN on", "lr 0.3")."""
    parts = []
    for name in ("batch_norm", "skip"):
        if getattr(old, name) != getattr(new, name):
            parts.append(f"{'BN' if name == 'batch_norm' else 'skip'} {'on' if getattr(old, name) else 'off'}")
    for name in ("init", "activation", "optimizer", "dataset", "arch"):
        if getattr(old, name) != getattr(new, name):
            parts.append(str(getattr(old, name)))
    for name in ("depth", "width", "lr", "batch_size", "seed"):
        if getattr(old, name) != getattr(new, name):
            parts.append(f"{name.replace('_size', '')} {getattr(old, name):g}")
    if old.optimizer == new.optimizer:
        for name in sorted(set(old.optimizer_options) | set(new.optimizer_options)):
            if old.optimizer_options.get(name) != new.optimizer_options.get(name):
                parts.append(f"{name} {old.optimizer_options.get(name, 'default')}")
    return ", ".join(parts) or old.name or "same settings"


class Dashboard:
    """The whole app; ``widget`` is what to display."""

    def __init__(self, query: str = "", runs_dir: str | Path = "runs", max_rate: float = 5.0):
        self.runs_dir = Path(runs_dir)
        self.max_rate = max_rate
        self._commands: queue.Queue = queue.Queue()
        self._alive = True
        self._last_heartbeat: float | None = None
        self.session: TrainingSession | None = None
        self._pushed: dict[str, int] = {}
        self._overlays: list[dict] = []
        self._blocks: list[int] = []
        self.flow = PageFlow()
        cfg, ignored = RunConfig.from_query(query)
        if "steps=" not in query:  # a live run should last long enough to play with
            cfg = cfg.replace(steps=20000)
        ignored += [f"{name} (set by the server, not the page)" for name in SERVER_ONLY if getattr(cfg, name) != getattr(RunConfig(), name)]
        cfg = cfg.replace(**{name: getattr(RunConfig(), name) for name in SERVER_ONLY})
        self._build_controls(cfg)
        self._build_figure()
        self.plot_box = W.Box([self.fig], layout=W.Layout(width="100%"))
        self.plot_box.add_class("bpviz-plot")
        self.hessian_note = W.HTML()
        self.hessian_note.add_class("bpviz-hessian-note")
        self.widget = W.HBox([self.panel, W.VBox([self.status, self.message, self.hessian_note, self.plot_box],
                                                 layout=W.Layout(flex="1"))])
        self.widget.add_class("bpviz-app")
        try:
            self._new_session(cfg)
        except (ValueError, ImportError) as exc:  # e.g. a dataset whose files this server lacks
            ignored.append(f"these settings could not start ({exc}); defaults used")
            cfg = RunConfig(steps=cfg.steps)
            self._set_controls(cfg)
            self._new_session(cfg)
        if ignored:
            self._say("Ignored from the link: " + "; ".join(ignored), "warn")
        self._publisher = threading.Thread(target=self._publish_loop, name="bpviz-publisher", daemon=True)
        self._publisher.start()

    # --- controls --------------------------------------------------------------------------
    def _build_controls(self, cfg: RunConfig) -> None:
        self._syncing = False

        def tag(widget, name):
            widget.add_class(f"bpviz-{name}")
            return widget

        style = {"description_width": "90px"}
        self.preset = tag(W.Dropdown(options=[("(custom)", "")] + [(n, n) for n in PRESETS], value="",
                                     description="preset", style=style), "preset")
        self.controls = {
            "dataset": tag(W.Dropdown(options=["spirals", "circles", "xor", "gaussians", "teacher", "digits", "mnist1d"],
                                      description="dataset", style=style), "dataset"),
            "arch": tag(W.Dropdown(options=["mlp", "cnn"], description="network", style=style), "arch"),
            "depth": tag(W.BoundedIntText(min=1, max=100, description="depth", style=style), "depth"),
            "width": tag(W.BoundedIntText(min=1, max=512, description="width", style=style), "width"),
            "activation": tag(W.Dropdown(options=["tanh", "relu", "sigmoid", "linear"], description="activation", style=style), "activation"),
            "init": tag(W.Dropdown(options=["gaussian", "xavier", "kaiming", "orthogonal"], description="init", style=style), "init"),
            "init_std": tag(W.BoundedFloatText(min=1e-4, max=10, step=0.01, description="init std", style=style), "init-std"),
            "batch_norm": tag(W.Checkbox(description="batch norm", indent=False), "bn"),
            "skip": tag(W.Checkbox(description="skip connections", indent=False), "skip"),
            "optimizer": tag(W.Dropdown(options=["sgd", "adam", "sa_sgd", "proxbp", "sibp"], description="optimizer", style=style), "optimizer"),
            "lr": tag(W.FloatLogSlider(base=10, min=-4, max=1, step=0.25, description="step size", readout_format=".2e",
                                       continuous_update=False, style=style), "lr"),
            "batch_size": tag(W.BoundedIntText(min=1, max=4096, description="batch", style=style), "batch"),
            "seed": tag(W.IntText(description="seed", style=style), "seed"),
            "hessian_every": tag(W.Dropdown(options=[("auto (≤15% of time)", "auto"), ("every step", 1), ("every 10", 10),
                                                     ("every 100", 100)], description="Hessian", style=style), "hessian"),
            "steps": tag(W.BoundedIntText(min=1, max=10**7, description="steps", style=style), "steps"),
        }
        self.options_box = tag(W.VBox(layout=W.Layout(margin="0 0 0 20px")), "options")
        self.option_widgets: dict[str, W.Widget] = {}
        self._set_controls(cfg)
        for name, widget in self.controls.items():
            # checked when the value changes, on the thread that changed it: the app's own updates
            # of the controls (presets, JSON) must not read as user edits
            widget.observe(lambda change, name=name: None if self._syncing else self._commands.put(("changed", name)),
                           names="value")
        self.preset.observe(lambda change: self._commands.put(("preset", change["new"])), names="value")

        def button(label, name, style_name="", icon=""):
            b = tag(W.Button(description=label, button_style=style_name, icon=icon, layout=W.Layout(width="80px")), name)
            b.on_click(lambda _: self._commands.put((name, None)))
            return b

        self.start_btn = button("Start", "start", "success", "play")
        self.pause_btn = button("Pause", "pause", "", "pause")
        self.stop_btn = button("Stop", "stop", "danger", "stop")
        self.reset_btn = button("Reset", "reset", "warning", "undo")
        self.heartbeat = tag(W.Play(interval=2000, max=10**9, show_repeat=False, layout=W.Layout(display="none")), "heartbeat")
        self.heartbeat.observe(lambda change: setattr(self, "_last_heartbeat", time.monotonic()), names="value")
        self.share = tag(W.Text(description="link", style=style, disabled=False), "share")
        self.json = tag(W.Textarea(layout=W.Layout(height="90px", width="100%")), "json")
        self.load_json_btn = button("Apply", "apply-json")
        self.overlay_list = tag(W.SelectMultiple(options=[], description="earlier", rows=4, style=style), "overlays")
        self.overlay_list.observe(lambda change: self._commands.put(("overlay-visibility", None)), names="value")
        self.remove_overlay_btn = button("Remove", "remove-runs")
        self.clear_overlays_btn = button("Clear all", "clear-runs")
        self.saved_runs = tag(W.Dropdown(options=[], description="saved run", style=style,
                                         layout=W.Layout(width="240px")), "saved-runs")
        self.load_run_btn = button("Show", "load-run")
        self.status = tag(W.HTML(), "status")
        self.message = tag(W.HTML(), "message")
        self.panel = W.VBox([
            W.HTML("<b>Network and training</b> (a change of network starts a new run)"),
            self.preset, *self._panel_controls(),
            W.HBox([self.start_btn, self.pause_btn, self.stop_btn, self.reset_btn]), self.heartbeat,
            W.HTML("<b>Compare</b> (selected earlier runs are shown)"), self.overlay_list,
            W.HBox([self.remove_overlay_btn, self.clear_overlays_btn]),
            W.HBox([self.saved_runs, self.load_run_btn]),
            W.HTML("<b>Share</b>"), self.share, self.json, self.load_json_btn,
        ], layout=W.Layout(width="340px"))

    def _panel_controls(self) -> list[W.Widget]:
        """The controls in panel order, the optimizer's own options right under the optimizer."""
        out = []
        for name, widget in self.controls.items():
            out.append(widget)
            if name == "optimizer":
                out.append(self.options_box)
        return out

    @contextmanager
    def _app_update(self):
        """While the app itself sets controls (presets, JSON, a new optimizer's options): their
        observers see the flag, on the thread that set them, and do not read it as a user's edit."""
        outer, self._syncing = self._syncing, True
        try:
            yield
        finally:
            self._syncing = outer

    def _set_controls(self, cfg: RunConfig) -> None:
        with self._app_update():
            for name, widget in self.controls.items():
                value = getattr(cfg, name)
                if isinstance(widget, W.Dropdown):
                    listed = [o if isinstance(o, tuple) else (str(o), o) for o in widget.options]
                    if value not in [v for _, v in listed]:  # valid, but not in the menu (hessian_every=37)
                        widget.options = listed + [(str(value), value)]
                widget.value = value
            self._set_option_widgets(cfg.optimizer, cfg.optimizer_options)

    def _set_option_widgets(self, optimizer: str, values: dict) -> None:
        """One control per option the chosen optimizer declares, showing ``values`` or the default."""
        widgets = {}
        for name, option in ALGORITHMS[optimizer].OPTIONS.items():
            widget = option_widget(name, option, values.get(name, option.default))
            widget.add_class(f"bpviz-option-{name}")
            widget.observe(lambda change: None if self._syncing else self._commands.put(("changed", "optimizer_options")),
                           names="value")
            widgets[name] = widget
        for old in self.option_widgets.values():
            old.close()
        self.option_widgets = widgets
        self.options_box.children = list(widgets.values())

    def current_config(self) -> RunConfig:
        """The settings the controls show, on top of the running config's other fields; optimizer
        options only where they differ from the default, so links stay short."""
        base = self.session.cfg if self.session else RunConfig()
        options = ALGORITHMS[self.controls["optimizer"].value].OPTIONS
        chosen = {name: w.value for name, w in self.option_widgets.items()
                  if name in options and w.value != options[name].default}
        values = {name: w.value for name, w in self.controls.items()}
        values["lr"] = float(f"{values['lr']:.3g}")  # the log slider's 0.0316227766... reads as 0.0316
        return base.replace(name="", optimizer_options=chosen, **values)

    # --- figure ----------------------------------------------------------------------------
    def _build_figure(self) -> None:
        titles = ("loss", "accuracy", "condition number κ of local Hessians", "input-Hessian spectrum now",
                  "gradient norm per block", "SA-SGD scale per block")
        fig = make_subplots(rows=3, cols=2, subplot_titles=titles, vertical_spacing=0.09, horizontal_spacing=0.13)
        fig.update_layout(height=820, margin=dict(l=50, r=10, t=40, b=40), uirevision="keep",
                          legend=dict(font=dict(size=10)), hovermode="closest")
        axes = {(1, 1): ("step", "loss (log)", "log"), (1, 2): ("step", "accuracy", "linear"),
                (2, 1): ("step", "κ = λmax/λmin>0 (log)", "log"), (2, 2): ("log10 eigenvalue (0 = ideal, λ = 1)", "number of eigenvalues", "linear"),
                (3, 1): ("step", "‖∂loss/∂W‖ (log)", "log"), (3, 2): ("step", "scale (log)", "log")}
        for (r, c), (xt, yt, ytype) in axes.items():
            fig.update_xaxes(title_text=xt, row=r, col=c)
            fig.update_yaxes(title_text=yt, type=ytype, row=r, col=c)
        # accuracy autoranges (0.95-0.98 stays readable) but never past [0, 1], nor to -1..4 while empty
        fig.update_yaxes(autorangeoptions=dict(clipmin=0, clipmax=1.02), row=1, col=2)
        # the legend lists the input-Hessian traces; this says what the dotted ones are
        fig.add_annotation(text="── input   ····· weight", xref="x3 domain", yref="y3 domain", x=0.01, y=0.99,
                           xanchor="left", yanchor="top", showarrow=False, font=dict(size=10, color="#444"),
                           bgcolor="rgba(255,255,255,0.7)")
        fig.add_annotation(text="SA-SGD's scales show<br>when the optimizer is sa_sgd", name="sa-sgd-hint",
                           xref="x6 domain", yref="y6 domain", x=0.5, y=0.5, showarrow=False,
                           font=dict(size=11, color="#777"))
        self.fig = LockedFigureWidget(fig)
        self.fig.add_class("bpviz-figure")

    def _rebuild_traces(self, depth: int) -> None:
        """One set of traces for the current run (per shown block) plus the overlays."""
        self._blocks = shown_blocks(depth)
        empty = np.zeros(0, np.float32)
        train, test = dict(color="#1f77b4"), dict(color="#ff7f0e")  # the same colours in both panels
        traces = [("train loss", 1, 1, train), ("test loss", 1, 1, test),
                  ("train accuracy", 1, 2, train), ("test accuracy", 1, 2, test)]
        palette = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#17becf"]
        for i, b in enumerate(self._blocks):
            colour = palette[i % len(palette)]
            traces += [(f"κ input · block {b}", 2, 1, dict(color=colour)),
                       (f"κ weight · block {b}", 2, 1, dict(color=colour, dash="dot")),
                       (f"spectrum input · block {b}", 2, 2, dict(color=colour)),
                       (f"grad norm · block {b}", 3, 1, dict(color=colour)),
                       (f"scale · block {b}", 3, 2, dict(color=colour))]
        overlay_traces = []
        for ov in self._overlays:
            for key, (r, c) in (("train loss", (1, 1)), ("test accuracy", (1, 2)), ("κ input · mean", (2, 1))):
                overlay_traces.append((f"{ov['label']} · {key}", r, c, ov, key))
        with self.fig.changing():
            with self.fig.batch_update():
                self.fig.data = []
                for name, r, c, line in traces:
                    self.fig.add_trace(go.Scatter(x=empty, y=empty, name=name, mode="lines+markers", line=line,
                                                  marker=dict(size=5), legendgroup=name.split(" · ")[-1],
                                                  showlegend=" · " not in name or name.startswith("κ input"),
                                                  hovertemplate=f"{html.escape(name)}<br>step %{{x}}<br>%{{y:.4g}}<extra>current run</extra>"),
                                       row=r, col=c)
                for name, r, c, ov, key in overlay_traces:
                    x, y = ov["series"].get(key, (empty, empty))
                    self.fig.add_trace(go.Scatter(x=x, y=y, name=name, mode="lines", line=dict(color="#999", dash="dash", width=1),
                                                  visible=True if ov["label"] in self.overlay_list.value else "legendonly",
                                                  hovertemplate=f"{html.escape(name)}<br>step %{{x}}<br>%{{y:.4g}}<extra>{html.escape(ov['label'])}</extra>"),
                                       row=r, col=c)
            hint = next(a for a in self.fig.layout.annotations if a.name == "sa-sgd-hint")
            hint.visible = self.session is None or self.session.cfg.optimizer != "sa_sgd"
            # the traces are also the state a page that connects later starts from: a FigureWidget
            # inside a Box keeps the state it was created with (Voila renders after the notebook ran), and
            # only later deltas would reach such a page, which would start from an empty plot
            self.fig._widget_data = deepcopy(self.fig._data)
            self.fig._widget_layout = deepcopy(self.fig._layout_obj._props)
        self._pushed = {}

    # --- commands (run on the publisher thread) -----------------------------------------------
    def _say(self, text: str, kind: str = "info") -> None:
        colour = {"info": "#555", "warn": "#b36b00", "error": "#c00"}[kind]
        self.message.value = f'<span style="color:{colour}">{html.escape(text)}</span>' if text else ""

    def _new_session(self, cfg: RunConfig) -> None:
        if self.session is not None:
            self._keep_as_overlay(self.session, cfg)
            if self.session.state in (State.RUNNING, State.PAUSED):
                self.session.stop()
        self.session = TrainingSession(cfg, runs_dir=self.runs_dir, max_rate=self.max_rate)
        self._bounded: set[str] = set()
        self._rebuild_traces(cfg.depth)
        self._describe_probe()
        self._refresh_share(cfg)
        self._refresh_saved_runs()

    def _describe_probe(self) -> None:
        """Say on which samples the local Hessians are computed, and which numbers are bounds."""
        n, batch = self.session.probe_samples, self.session.cfg.batch_size
        bn = " (batch norm's statistics over these)" if self.session.cfg.batch_norm else ""
        same = "the training batch size" if n == batch else f"training batches have {batch}"
        text = f"Local Hessians on the first {n} training samples{bn}; {same}."
        if self._bounded:
            blocks = sorted({int(k.rsplit("/", 1)[1]) for k in self._bounded})
            text += (f" △ κ ≥: lower bounds (blocks {', '.join(map(str, blocks))}: the exact spectrum is too large to "
                     "refresh live; Krylov bounds, certified) and their spectra are estimates.")
        else:
            text += " Every κ shown is exact."
        self.hessian_note.value = f'<span style="color:#555;font-size:12px">{html.escape(text)}</span>'

    def _keep_as_overlay(self, session: TrainingSession, new_cfg: RunConfig) -> None:
        if session.step == 0:
            return
        snap = session.history.snapshot()
        series = {}
        for key, name in (("train loss", "train_loss"), ("test accuracy", "test_accuracy")):
            if name in snap:
                series[key] = _downsample(snap[name]["step"], snap[name]["value"])
        conds = [snap[k] for k in snap if k.startswith("cond/input/")]
        if conds:
            steps = conds[0]["step"]
            n = min(len(c["value"]) for c in conds)
            mean = np.exp(np.nanmean(np.log(np.array([c["value"][:n] for c in conds], dtype=np.float64)), axis=0))
            series["κ input · mean"] = _downsample(steps[:n], mean)
        label = describe_difference(session.cfg, new_cfg)
        labels = [o["label"] for o in self._overlays]
        if label in labels:
            label = f"{label} ({sum(l.startswith(label) for l in labels) + 1})"
        self._overlays = (self._overlays + [{"label": label, "series": series}])[-MAX_OVERLAYS:]
        self.overlay_list.options = [o["label"] for o in self._overlays]
        self.overlay_list.value = tuple(o["label"] for o in self._overlays)

    def _refresh_share(self, cfg: RunConfig) -> None:
        self.share.value = "?" + cfg.to_query()
        self.json.value = cfg.to_json(indent=1)

    def _refresh_saved_runs(self) -> None:
        runs, _ = list_runs(self.runs_dir)
        self.saved_runs.options = [(f"{r.run_id} ({r.status.get('state', '?')})", r.run_id) for r in runs[-30:]]

    def _handle(self, command: str, arg) -> None:
        s = self.session
        if command == "start":
            if s.state in ENDED:
                self._new_session(self.current_config())
                s = self.session
            if s.state is State.IDLE:
                self._say("")
                self.heartbeat.playing = True
                s.start()
        elif command == "pause":
            if s.state is State.RUNNING:
                s.pause()
            elif s.state is State.PAUSED:
                s.resume()
        elif command == "stop":
            if s.state in (State.RUNNING, State.PAUSED):
                s.stop()
        elif command == "reset":
            self._say("")
            self._new_session(self.current_config())
        elif command == "changed":
            if arg == "lr":
                s.set_lr(self.controls["lr"].value)
                self._refresh_share(self.current_config())
            elif arg == "hessian_every":
                s.set_hessian_every(self.controls["hessian_every"].value)
            elif arg in ARCHITECTURE or arg in ("steps", "optimizer_options"):
                if arg == "optimizer":  # another algorithm: its own options, at their defaults
                    with self._app_update():
                        self._set_option_widgets(self.controls["optimizer"].value, {})
                try:
                    cfg = self.current_config()
                except ConfigError as exc:
                    self._say(str(exc), "error")
                    return
                running = s.state in (State.RUNNING, State.PAUSED)
                self._new_session(cfg)  # like TensorFlow Playground: a new architecture is a new run
                if running:
                    self._say(f"{arg} changed: the run was reset with the new setting; press Start.", "info")
        elif command == "preset" and arg:
            self._set_controls(PRESETS[arg])
            self._new_session(PRESETS[arg].replace(**{n: getattr(RunConfig(), n) for n in SERVER_ONLY}))
        elif command == "apply-json":
            try:
                data = json.loads(self.json.value)
                blocked = [n for n in SERVER_ONLY if isinstance(data, dict) and n in data]
                cfg = RunConfig.from_dict({k: v for k, v in data.items() if k not in SERVER_ONLY})
            except (ConfigError, ValueError, AttributeError) as exc:
                self._say(f"settings not applied: {exc}", "error")
                return
            self._set_controls(cfg)
            self._new_session(cfg)
            if blocked:
                self._say(f"Ignored from the JSON: {', '.join(blocked)} (set by the server, not the page)", "warn")
        elif command in ("remove-runs", "clear-runs"):
            drop = set(self.overlay_list.value) if command == "remove-runs" else {o["label"] for o in self._overlays}
            self._overlays = [o for o in self._overlays if o["label"] not in drop]
            self.overlay_list.options = [o["label"] for o in self._overlays]
            self._rebuild_traces(s.cfg.depth)
        elif command == "overlay-visibility":
            shown = set(self.overlay_list.value)
            with self.fig.changing(), self.fig.batch_update():
                for trace in self.fig.data:
                    label = trace.name.split(" · ")[0]
                    if label in {o["label"] for o in self._overlays}:
                        trace.visible = True if label in shown else "legendonly"
        elif command == "load-run" and self.saved_runs.value:
            run_id = self.saved_runs.value
            run = load_run(self.runs_dir / run_id)  # an id from list_runs: never a path from the page
            series = {}
            for key, name in (("train loss", "train_loss"), ("test accuracy", "test_accuracy")):
                pts = [(r["step"], r[name]) for r in run.records if name in r]
                if pts:
                    series[key] = _downsample(*zip(*pts))
            self._overlays = (self._overlays + [{"label": f"saved {run_id}", "series": series}])[-MAX_OVERLAYS:]
            self.overlay_list.options = [o["label"] for o in self._overlays]
            self.overlay_list.value = tuple(self.overlay_list.options)
            self._rebuild_traces(s.cfg.depth)

    # --- the publisher thread ----------------------------------------------------------------
    def _publish_loop(self) -> None:
        period = 1.0 / self.max_rate
        deadline = time.monotonic()
        while self._alive:
            # ticks on a fixed grid, so the time a redraw takes does not lower the rate
            deadline = max(deadline + period, time.monotonic())
            try:
                while True:
                    timeout = max(0.0, deadline - time.monotonic())
                    command, arg = self._commands.get(timeout=timeout)
                    self._handle(command, arg)
            except queue.Empty:
                pass
            except Exception as exc:  # the app stays responsive whatever one command did
                self._say(f"{type(exc).__name__}: {exc}", "error")
            try:
                self._check_heartbeat()
                self._draw()
            except Exception as exc:
                self._say(f"display error: {type(exc).__name__}: {exc}", "error")

    def _check_heartbeat(self) -> None:
        s = self.session
        if (self._last_heartbeat is not None and s.state is State.RUNNING
                and time.monotonic() - self._last_heartbeat > HEARTBEAT_TIMEOUT):
            s.stop()  # the page is gone: do not train for nobody
            self._say(f"Stopped at step {s.step}: no heartbeat from the page for {HEARTBEAT_TIMEOUT:.0f} s "
                      "(was the tab closed or asleep?). Press Start for a new run.", "warn")

    def _draw(self) -> None:
        s = self.session
        snap = s.snapshot()
        state = snap["state"]
        self.pause_btn.description = "Resume" if state == "paused" else "Pause"
        self.status.value = (f"<b>{state}</b> · step {snap['step']} · {snap['steps_per_s']:.0f} steps/s · "
                             f"{snap['device']} · lr {snap['lr']:.2e}")
        if state in ("diverged", "failed") and "diverged" not in self.message.value and "failed" not in self.message.value:
            what = snap["message"]
            what = f"Run {what}" if what.startswith(state) else f"Run {state}: {what}"
            self._say(f"{what}. The history up to then is kept; change the step size and press Reset.", "error")
        if not self.flow.ready():
            return  # the page has not taken the last updates yet: this one would queue up behind them
        history = snap["history"]
        updates = {}
        for trace in self.fig.data:
            key = self._series_key(trace.name)
            if key is not None and key not in history and key.startswith("cond/"):
                key = self._mark_bound(trace, key, history)
            if key is None or key not in history:
                continue
            series = history[key]
            last = series["step"][-1] if series["step"] else -1
            if self._pushed.get(trace.name) == (last, len(series["step"])):
                continue
            x, y = _downsample(series["step"], series["value"])
            # markers while a trace is short: a run that diverged after a few steps stays visible
            updates[trace.name] = x, y, "lines+markers" if len(x) <= MARKERS_BELOW else "lines"
            self._pushed[trace.name] = (last, len(series["step"]))
        spectra = self._spectra(snap)
        if not updates and not spectra:
            return
        with self.fig.changing(), self.fig.batch_update():
            for trace in self.fig.data:
                if trace.name in updates:
                    trace.x, trace.y, mode = updates[trace.name]
                    if trace.mode != mode:
                        trace.mode = mode
                elif trace.name in spectra:
                    trace.x, trace.y, estimated = spectra[trace.name]
                    if estimated:
                        trace.line.dash = "dashdot"
                        trace.hovertemplate = (f"{html.escape(trace.name)} (estimate: stochastic Lanczos quadrature)"
                                               "<br>log10 λ %{x:.2f}<br>≈ %{y:.3g} eigenvalues<extra></extra>")
        self.flow.sent()

    def _mark_bound(self, trace, key: str, history: dict) -> str | None:
        """A κ the report could only bound is recorded as ``cond_lower_bound/...``: its trace then
        says "κ ≥" in the hover and shows open triangles, and the note under the figure says why."""
        bound = key.replace("cond/", "cond_lower_bound/", 1)
        if bound not in history:
            return None
        if bound not in self._bounded:
            self._bounded.add(bound)
            trace.marker.symbol = "triangle-up-open"
            trace.hovertemplate = f"{html.escape(trace.name)} (lower bound)<br>step %{{x}}<br>κ ≥ %{{y:.4g}}<extra>current run</extra>"
            self._describe_probe()
        return bound

    def _series_key(self, name: str) -> str | None:
        if " · " not in name:  # "train loss", "test accuracy", ...
            return name.replace(" ", "_")
        what, _, block = name.rpartition(" · block ")
        if not block.isdigit():
            return None
        return {"κ input": f"cond/input/{block}", "κ weight": f"cond/weight/{block}",
                "grad norm": f"grad_norm/{block}", "scale": f"scale/{block}"}.get(what)

    def _spectra(self, snap: dict) -> dict:
        report = self.session.report
        if report is None or self._pushed.get("report") == report["step"]:
            return {}
        self._pushed["report"] = report["step"]
        edges = np.asarray(report["hist_edges"], np.float32)
        centres = (edges[:-1] + edges[1:]) / 2
        return {f"spectrum input · block {s['block']}": (centres, np.asarray(s["hist_counts"], np.float32),
                                                         s["method"] != "exact")
                for s in report["stats"] if s["wrt"] == "input" and s["block"] in self._blocks}

    def close(self) -> None:
        self._alive = False
        if self.session and self.session.state in (State.RUNNING, State.PAUSED):
            self.session.stop()


def warm_up() -> None:
    """Pay the app's first-use costs now: a short run of the default settings, its local-Hessian
    report and an empty figure. The first ``torch.optim`` optimizer imports ``torch._dynamo``
    (2.4 s here), and the first steps, eigen-solves and plotly figure are slower than later ones;
    a preheated Voila kernel does this while it waits for its page, so the page gets its app sooner."""
    session = TrainingSession(RunConfig(steps=30), loss_every=10, eval_every=10, hessian_share=0.5)
    session.start()
    session.wait(timeout=60)
    make_subplots(rows=3, cols=2).add_trace(go.Scatter(x=np.zeros(1, np.float32), y=np.zeros(1, np.float32)), row=1, col=1)


def launch(runs_dir: str | Path | None = None) -> Dashboard:
    """Display the app (in Voila or a JupyterLab cell); settings come from the page's URL query.

    In a preheated Voila kernel (one started and run before any page asked for it) this warms up
    and then waits for the page's request, whose URL query it then reads."""
    from IPython.display import display

    # One compute thread per app kernel: with two, OpenMP's spinning threads slow training by
    # orders of magnitude whenever the browser or another kernel holds a core (measured here).
    torch.set_num_threads(int(os.environ.get("BPVIZ_THREADS", "1")))
    if os.environ.get("VOILA_PREHEAT") == "True":
        from voila.utils import wait_for_request

        warm_up()
        wait_for_request()
    app = Dashboard(query=os.environ.get("QUERY_STRING", ""),
                    runs_dir=runs_dir or os.environ.get("BPVIZ_RUNS_DIR", "runs"))
    display(app.widget)
    return app
