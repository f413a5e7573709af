"""The bpviz dashboard: controls on the left, one live plotly figure on the right.

The app owns one ``RunConfig``, ``cfg``: an edit of a control makes a new config (``RunConfig``
validates it, and an error names the field), which the controls and the share link then show. A
new step size or Hessian cadence reaches the running session; any other change starts a new run
(``TrainingSession``), like the TensorFlow Playground. Widget callbacks only queue commands for one
UI thread (``Publisher``), which runs them and reads the session's snapshot at most ``max_rate``
times a second to redraw the figure, no faster than the page takes the updates (``PageFlow``).
"""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Any

import ipywidgets as W

from bpviz.config import ConfigError, RunConfig
from bpviz.optim import ALGORITHMS
from bpviz.presets import DESCRIPTIONS, PRESETS
from bpviz.runs import load_run
from bpviz.session import ENDED, State, TrainingSession

from .compare_section import CompareSection
from .controls import SERVER_ONLY, STYLE, ConfigControls, from_link, page_fields, server_defaults, tag
from .figure import Figure
from .flow import Heartbeat, PageFlow
from .grid import ALL, VIEWS
from .layout import PRESENT_TIP, PROJECTOR_HIDES, TITLE, secondary, share_link, style
from .lesson import LessonGuide
from .overlays import Overlays
from .publisher import Publisher
from .status import STOPPING, ended_badly, status_line
from .teacher import apply_to_page, keep_locked, locked_fields, split_flags

#: the fields a running session takes as they change, and the method that takes each; a change of
#: any other field starts a new run
LIVE = {"lr": "set_lr", "hessian_every": "set_hessian_every"}


class Dashboard:
    """The whole app; ``widget`` is what to display, ``cfg`` the settings it shows and runs."""

    def __init__(self, query: str = "", runs_dir: str | Path = "runs", max_rate: float = 12.0, page_url: str = ""):
        self.runs_dir = Path(runs_dir)
        self.page_url = page_url  # the page's address without its query, as the server saw it
        self.max_rate = max_rate
        self.publisher = Publisher(
            {
                "start": self._start,
                "pause": self._pause,
                "stop": self._stop,
                "reset": self._reset,
                "edit": self._edit,
                "option": self._edit_option,
                "preset": self._preset,
                "apply-json": self._apply_json,
                "remove-runs": self._remove_runs,
                "clear-runs": self._clear_runs,
                "overlay-visibility": lambda _: self.figure.show_overlays(self.overlays),
                "view": self._view,
                "present": self._present,
                "load-run": self._load_run,
                "resume-run": self._resume_run,
            },
            tick=self._tick,
            say=lambda text: self._say(text, "error"),
            max_rate=max_rate,
        )
        put = self.publisher.put
        self._drawn_state = ""
        self._stopping = False  # Stop was pressed while the worker was inside a report
        settings = {f.name for f in page_fields()}
        query, self.flags, flag_notes = split_flags(query, settings, VIEWS)
        self.locked = locked_fields(self.flags, settings)  # the fields _switch and _edit keep
        cfg, ignored = from_link(query)
        ignored += flag_notes
        try:
            session = self._session(cfg)
        except (ValueError, ImportError) as exc:  # e.g. a dataset whose files this server lacks
            ignored.append(f"these settings could not start ({exc}); defaults used")
            cfg = RunConfig(steps=cfg.steps)
            session = self._session(cfg)
        self.session, self.cfg = session, cfg
        self.form = ConfigControls(
            cfg,
            on_edit=lambda name, value: (put if name in LIVE else self._loading)("edit", {name: value}),
            on_option=lambda name, value: put("option", (name, value)),
        )
        self.controls = self.form.widgets
        self.overlays = Overlays()
        self.figure = Figure()
        self.hessian_note = self.figure.note
        self.view = tag(W.Dropdown(options=VIEWS, value=ALL, description="show", style=STYLE), "view")
        self.view.observe(lambda change: self.publisher.put("view", change["new"]), names="value")
        self.present = tag(
            W.ToggleButton(value=False, description="Projector", icon="television", tooltip=PRESENT_TIP), "present"
        )
        self.present.observe(lambda change: self.publisher.put("present", change["new"]), names="value")
        self.flow = PageFlow()
        self._build_page()
        self._adopt(session)
        if ignored:
            self._say("Ignored from the link: " + "; ".join(ignored), "warn")
        self.publisher.start()

    @property
    def option_widgets(self) -> dict[str, W.Widget]:
        """The chosen optimizer's option controls (new ones for each optimizer)."""
        return self.form.option_widgets

    def _button(self, label: str, command: str, style: str = "", icon: str = "") -> W.Button:
        b = tag(W.Button(description=label, button_style=style, icon=icon, layout=W.Layout(width="80px")), command)
        b.on_click(lambda _: self.publisher.put(command))
        return b

    def _build_page(self) -> None:
        self.preset = tag(
            W.Dropdown(
                options=[("(custom)", "")] + [(n, n) for n in PRESETS], value="", description="preset", style=STYLE
            ),
            "preset",
        )
        self.preset_note = tag(W.HTML(), "preset-note")  # what the chosen preset shows
        self.preset.observe(lambda change: self._loading("preset", change["new"]), names="value")
        self.start_btn = self._button("Start", "start", "success", "play")
        self.pause_btn = self._button("Pause", "pause", "", "pause")
        self.stop_btn = self._button("Stop", "stop", "danger", "stop")
        self.reset_btn = self._button("Reset", "reset", "warning", "undo")
        self.heartbeat = Heartbeat()
        tag(self.heartbeat.widget, "heartbeat")
        self.share = tag(W.Text(description="query", style=STYLE, disabled=False), "share")
        self.share_url = tag(W.HTML(), "share-link")
        self.json = tag(W.Textarea(layout=W.Layout(height="90px", width="100%")), "json")
        self.load_json_btn = self._button("Apply", "apply-json")
        self.overlays.list.observe(lambda change: self.publisher.put("overlay-visibility"), names="value")
        self.compare = CompareSection(self.overlays, self.runs_dir, self._button)
        self.status = tag(W.HTML(), "status")
        self.message = tag(W.HTML(), "message")
        self.lesson = LessonGuide(on_pick=lambda name: setattr(self.preset, "value", name))
        sections = {
            "lesson": secondary(self.lesson.widget),
            "compare": secondary(self.compare.widget),
            "share": secondary(
                W.VBox([W.HTML("<b>Share</b>"), self.share_url, self.share, self.json, self.load_json_btn])
            ),
        }
        buttons = W.HBox([self.start_btn, self.pause_btn, self.stop_btn, self.reset_btn])
        self.panel = tag(
            W.VBox(
                [
                    secondary(W.HTML(TITLE)),
                    self.preset,
                    self.preset_note,
                    buttons,
                    *self.form.panel(),
                    self.heartbeat.widget,
                    *sections.values(),
                ]
            ),
            "side",
        )
        for widget in [self.form.options_box, *(self.controls[name] for name in PROJECTOR_HIDES)]:
            secondary(widget)
        # the teacher's link: _switch keeps the locked fields whatever asks to change them
        hideable = {**self.controls, **sections, "preset": self.preset, "options": self.form.options_box}
        apply_to_page(self.flags, hideable, self.form, self.lesson.load_btn)
        toolbar = W.HBox([self.view, self.present, self.status], layout=W.Layout(align_items="center"))
        self.single = tag(W.Box([self.figure.box, self.figure.explain]), "single")
        main = tag(W.VBox([toolbar, self.message, self.hessian_note, self.figure.key, self.single]), "main")
        self.widget = W.HBox([style(), self.panel, main])
        self.widget.add_class("bpviz-app")
        self.view.value = self.flags.view or ALL
        self.present.value = self.flags.present

    def _loading(self, command: str, arg: Any) -> None:
        """Say at once that new settings are loading (the command may take a second), and hold
        Start until they are ready; the UI thread then makes the run."""
        self.start_btn.disabled = True
        self.status.value = "<b>loading…</b> (the new settings take a moment)"
        self.publisher.put(command, arg)

    def _present(self, on: bool) -> None:
        """The projector layout: only what a demonstration needs, in larger type (the share link
        keeps it, so a teacher can prepare the link)."""
        (self.widget.add_class if on else self.widget.remove_class)("bpviz-projector")
        self.figure.set_height(on)
        self.flags.present = on
        self._show(self.cfg)

    def _view(self, view: str) -> None:
        """All panels, or one alone and large (with its explanation beside it)."""
        self.flags.view = "" if view == ALL else view
        self.figure.set_view(view, self.overlays)
        (self.single.remove_class if view == ALL else self.single.add_class)("bpviz-one")
        self._show(self.cfg)

    # --- the state and its runs (on the publisher thread, but for __init__) ---------------------
    def _session(self, cfg: RunConfig, checkpoint: Path | None = None) -> TrainingSession:
        return TrainingSession(cfg, runs_dir=self.runs_dir, max_rate=self.max_rate, checkpoint=checkpoint)

    def _show(self, cfg: RunConfig) -> None:
        """The state renders the page: the controls and the share link show ``cfg``."""
        self.form.show(cfg)
        self.share.value = "?" + cfg.to_query() + self.flags.query()
        self.share_url.value = share_link(self.share.value, self.page_url)
        self.json.value = cfg.to_json(indent=1)

    def _adopt(self, session: TrainingSession) -> None:
        self.session, self.cfg = session, session.cfg
        if self._stopping:  # the run that was stopping is not the page's any more
            self._stopping = False
            self._say("")
        if self.preset.value and session.cfg.name != self.preset.value:
            self.preset.value = ""  # custom settings now: the menu and the lesson say so
        self._show(session.cfg)
        self.overlays.new_run(session.cfg)
        self.figure.new_run(session, self.overlays)
        self.compare.list_saved()

    def _switch(self, cfg: RunConfig, checkpoint: Path | None = None, note: str = "") -> bool:
        """A new run of ``cfg`` (going on from ``checkpoint`` if given), which becomes the state; the
        run it replaces stays as an overlay. Locked fields keep their values (the message says
        which). Settings that cannot start (a dataset this server cannot load, a checkpoint of
        another config) change nothing; ``note`` is said with the message of the kept fields."""
        try:
            cfg, kept = keep_locked(cfg, self.cfg, self.locked)
            session = self._session(cfg, checkpoint)
        except (ValueError, ImportError) as exc:
            self._say(f"settings not applied: {exc}", "error")
            return False
        kept_note = f"kept as the teacher's link locks them: {', '.join(kept)}" if kept else ""
        if kept_note or note:
            self._say("; ".join(filter(None, [kept_note, note])), "warn")
        old = self.session
        self.overlays.keep(old)
        if old.state in (State.RUNNING, State.PAUSED):
            old.stop(wait=False)  # its worker leaves after what it is computing; the new run starts now
        self._adopt(session)
        return True

    def _say(self, text: str, kind: str = "info") -> None:
        colour = {"info": "#555", "warn": "#b36b00", "error": "#c00"}[kind]
        self.message.value = f'<span style="color:{colour}">{html.escape(text)}</span>' if text else ""

    # --- commands: one method each, run on the publisher thread ---------------------------------
    def _edit(self, changes: dict[str, Any]) -> None:
        """A control's edit becomes the state if ``RunConfig`` takes it; else the controls go back
        to the state and the message names the field."""
        (name,) = changes
        if name in self.locked:  # its control is disabled; a page edited by hand is refused
            self._say(f"{name} is locked by the teacher's link", "error")
            self._show(self.cfg)
            return
        if name == "optimizer":  # another algorithm: its own options, at their defaults
            changes = {**changes, "optimizer_options": {}}
        try:
            cfg = self.cfg.replace(name="", **changes)
        except ConfigError as exc:
            self._say(str(exc), "error")
            self._show(self.cfg)
            return
        if cfg == self.cfg:
            return
        if name in LIVE:
            getattr(self.session, LIVE[name])(getattr(cfg, name))
            self.cfg = cfg
            self._show(cfg)
            return
        running = self.session.state in (State.RUNNING, State.PAUSED)
        if not self._switch(cfg):
            self._show(self.cfg)
        elif running:
            self._say(f"{name} changed: the run was reset with the new setting; press Start.", "info")

    def _edit_option(self, arg: tuple[str, Any]) -> None:
        """One optimizer option changed; the config keeps only the options that differ from their
        defaults, so links stay short."""
        name, value = arg
        declared = ALGORITHMS[self.cfg.optimizer].OPTIONS
        options = {**self.cfg.optimizer_options, name: value}
        self._edit(
            {"optimizer_options": {k: v for k, v in options.items() if k not in declared or v != declared[k].default}}
        )

    def _start(self, _: None) -> None:
        if self.session.state in ENDED and not self._switch(self.cfg):
            return
        if self.session.state is State.IDLE:
            self._say("")
            self.heartbeat.start()
            self.session.start()

    def _pause(self, _: None) -> None:
        if self.session.state is State.RUNNING:
            self.session.pause()
        elif self.session.state is State.PAUSED:
            self.session.resume()

    def _stop(self, _: None) -> None:
        """Stop without waiting for the worker: it may be inside a local-Hessian report, which is
        not interrupted, and the page stays live meanwhile (the status says when it has stopped)."""
        if self.session.state in (State.RUNNING, State.PAUSED):
            self.session.stop(wait=False)
            if not self.session.wait(0.5):
                self._stopping = True
                self._say(STOPPING, "info")

    def _reset(self, _: None) -> None:
        self._say("")
        self._switch(self.cfg)

    def _preset(self, name: str) -> None:
        self.preset_note.value = (
            f'<span style="font-size:12px;color:#555">{html.escape(DESCRIPTIONS[name])}</span>' if name else ""
        )
        if name:
            self._switch(PRESETS[name].replace(**server_defaults()))
        self.lesson.current(name)

    def _apply_json(self, _: None) -> None:
        try:
            data = json.loads(self.json.value)
            blocked = [n for n in SERVER_ONLY if isinstance(data, dict) and n in data]
            cfg = RunConfig.from_dict({k: v for k, v in data.items() if k not in SERVER_ONLY})
        except (ConfigError, ValueError, AttributeError) as exc:
            self._say(f"settings not applied: {exc}", "error")
            return
        note = f"Ignored from the JSON: {', '.join(blocked)} (set by the server, not the page)" if blocked else ""
        self._switch(cfg, note=note)

    def _remove_runs(self, _: None) -> None:
        self._drop_overlays(self.overlays.shown)

    def _clear_runs(self, _: None) -> None:
        self._drop_overlays({o.label for o in self.overlays.items})

    def _drop_overlays(self, labels: set[str]) -> None:
        self.overlays.remove(labels)
        self.figure.rebuild(self.overlays)

    def _load_run(self, _: None) -> None:
        if self.compare.chosen:
            self.overlays.add_saved(self.runs_dir, self.compare.chosen)
            self.figure.rebuild(self.overlays)

    # --- what the publisher does between commands ---------------------------------------------
    def _resume_run(self, _: None) -> None:
        """The chosen saved run goes on from its checkpoint: to its own step count if it was
        stopped early, else for as many steps again."""
        if not self.compare.chosen:
            return
        run = load_run(self.runs_dir / self.compare.chosen)
        if run.checkpoint is None:
            self._say("this run has no checkpoint: only finished or stopped runs leave one", "warn")
        elif self._switch(run.resume_config(), run.checkpoint):
            self._say(f"resumed {run.run_id} at step {run.step} ({run.describe_step_sizes()}); press Start", "info")

    def _tick(self) -> None:
        self.start_btn.disabled = False  # the commands before this tick have run: new settings are ready
        self._check_heartbeat()
        self._draw()

    def _check_heartbeat(self) -> None:
        s = self.session
        if s.state is State.RUNNING and self.heartbeat.silent():
            s.stop(wait=False)  # the page is gone: do not train for nobody
            self._say(
                f"Stopped at step {s.step}: no heartbeat from the page for {self.heartbeat.timeout:.0f} s "
                "(was the tab closed or asleep?). Press Start for a new run.",
                "warn",
            )

    def _draw(self) -> None:
        snap = self.session.snapshot()
        state = snap["state"]
        if state != self._drawn_state:  # a run that just ended is now a saved run (and resumable)
            self._drawn_state = state
            if state in {s.value for s in ENDED}:
                self.compare.list_saved()
                if self._stopping:
                    self._stopping = False
                    self._say("")
            if state == "diverged" and snap["diverged_at"] is not None:
                self.figure.mark_divergence(snap["diverged_at"])
        self.pause_btn.description = "Resume" if state == "paused" else "Pause"
        self.status.value = status_line(snap)
        if state in ("diverged", "failed") and not any(w in self.message.value for w in ("diverged", "failed")):
            self._say(ended_badly(snap), "error")
        # while the page has not taken the last updates, another would only queue up behind them
        if self.flow.ready() and self.figure.draw(snap, self.session.report):
            self.flow.sent()

    def close(self) -> None:
        self.publisher.close()
        if self.session and self.session.state in (State.RUNNING, State.PAUSED):
            self.session.stop()
