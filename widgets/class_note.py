"""What the teacher pushed to the class, shown at the top of each student's dashboard.

The class overview (deploy/jupyterhub) replaces ``announcement.json`` atomically; the dashboard
under the hub gets its path in ``$BPVIZ_CLASS_FILE`` and looks at it every 2 s, so a preset, a
link or a message reaches every open page within seconds, without the kernel serving anything."""

from __future__ import annotations

import html
import json
import threading
from collections.abc import Callable
from pathlib import Path

import ipywidgets as W

from bpviz.presets import PRESETS

from .controls import tag

POLL_SECONDS = 2.0


class ClassNote:
    """A banner with the teacher's latest announcement and a button that loads its preset."""

    def __init__(self, path: str | Path, load_preset: Callable[[str], None], poll: float = POLL_SECONDS):
        self.path = Path(path)
        self.load_preset = load_preset
        self.shown_id = None
        self.preset = ""
        self.text = tag(W.HTML(), "class-note-text")
        self.button = tag(
            W.Button(description="Load it", icon="download", layout=W.Layout(width="auto")), "class-note-load"
        )
        self.button.on_click(lambda _: self.load_preset(self.preset) if self.preset else None)
        self.widget = tag(
            W.HBox(
                [self.text, self.button],
                layout=W.Layout(display="none", border="2px solid #0072b2", padding="4px 8px", margin="0 0 6px 0"),
            ),
            "class-note",
        )
        self._stop = threading.Event()
        self.check()
        threading.Thread(target=self._watch, args=(poll,), daemon=True, name="bpviz-class-note").start()

    def _watch(self, poll: float) -> None:
        while not self._stop.wait(poll):
            self.check()

    def close(self) -> None:
        self._stop.set()

    def check(self) -> None:
        """Show the announcement if it is new; an unreadable or half-made file is passed over until the next look."""
        try:
            note = json.loads(self.path.read_text())
            note_id = int(note["id"])
        except (OSError, ValueError, KeyError, TypeError):
            return
        if note_id == self.shown_id:
            return
        self.shown_id = note_id
        preset = str(note.get("preset", ""))
        self.preset = preset if preset in PRESETS else ""
        parts = [html.escape(str(note.get("message", "")))] if note.get("message") else []
        if self.preset:
            parts.append(f"preset <b>{html.escape(self.preset)}</b>")
        link = str(note.get("link", ""))
        if link:  # relative: the same dashboard, on this student's own server, with the teacher's settings
            parts.append(f'<a href="?{html.escape(link, quote=True)}" target="_self">open the teacher\'s link</a>')
        self.text.value = "<b>From your teacher:</b> " + " · ".join(parts)
        self.button.layout.display = "" if self.preset else "none"
        self.widget.layout.display = ""
