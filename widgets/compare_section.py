"""The page's Compare section: which earlier runs the figure shows, and the saved runs of this
page's runs folder (shown again as an overlay, or resumed from their checkpoint)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import ipywidgets as W

from bpviz.runs import list_runs

from .controls import STYLE, tag
from .overlays import Overlays

SAVED_SHOWN = 30  # the last runs of the folder the menu lists


class CompareSection:
    """The section's widgets; the app runs the commands its buttons name (``button(label, command)``
    makes a button that queues one)."""

    def __init__(self, overlays: Overlays, runs_dir: Path, button: Callable[[str, str], W.Button]):
        self.runs_dir = runs_dir
        self.remove_btn = button("Remove", "remove-runs")
        self.clear_btn = button("Clear all", "clear-runs")
        self.saved_runs = tag(
            W.Dropdown(options=[], description="saved run", style=STYLE, layout=W.Layout(width="230px")), "saved-runs"
        )
        self.load_btn = button("Show", "load-run")
        self.resume_btn = button("Resume", "resume-run")
        self.widget = tag(
            W.VBox(
                [
                    W.HTML("<b>Compare</b> (selected earlier runs are shown)"),
                    overlays.list,
                    W.HBox([self.remove_btn, self.clear_btn]),
                    W.HBox([self.saved_runs, self.load_btn]),
                    self.resume_btn,
                ]
            ),
            "compare",
        )

    @property
    def chosen(self) -> str:
        """The saved run picked in the menu ("" for none): a run id from ``list_runs``, never a path."""
        return self.saved_runs.value or ""

    def list_saved(self) -> None:
        """The folder's last runs, each with its state and the step sizes it really used."""
        runs, _ = list_runs(self.runs_dir)
        chosen = self.saved_runs.value
        self.saved_runs.options = [
            (f"{r.run_id} ({r.status.get('state', '?')}, {r.describe_step_sizes()})", r.run_id)
            for r in runs[-SAVED_SHOWN:]
        ]
        if chosen in {v for _, v in self.saved_runs.options}:
            self.saved_runs.value = chosen
