"""Earlier runs kept on the plot as overlays, labelled by what differed from the current settings.

A run replaced by a new one (another network, a reset) and a saved run from the runs folder both
become an ``Overlay``: a label and a few downsampled series. The list widget picks which are shown.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import ipywidgets as W
import numpy as np

from bpviz.config import RunConfig
from bpviz.runs import describe_step_sizes, load_run

from .controls import STYLE, tag
from .figure import downsample

if TYPE_CHECKING:
    from bpviz.session import TrainingSession

MAX_OVERLAYS = 6
#: an overlay's series and the history series they come from
KEPT = (("batch loss", "batch_loss"), ("test accuracy", "test_accuracy"))
KAPPA_MEAN = "κ input · mean"  # the geometric mean over the blocks of the input Hessians' κ


@dataclass
class Overlay:
    label: str
    series: dict[str, tuple[np.ndarray, np.ndarray]]


def _lr_change(lrs: Sequence[float]) -> str | None:
    """ "lr 0.3→10" for a run whose step size was changed while it ran, else None."""
    return describe_step_sizes(lrs, short=True) if len(set(lrs)) > 1 else None


def describe_difference(old: RunConfig, new: RunConfig, lrs: Sequence[float] = ()) -> str:
    """A short label for a past run by what differs from the current settings ("BN on", "lr 0.3").

    ``lrs`` are the step sizes the run used (its history's ``lr`` series, where the session
    records one): a run whose step size was changed while it ran says so, whatever ``new`` has."""
    parts, lr_change = [], _lr_change(lrs)
    for name in ("batch_norm", "skip"):
        if getattr(old, name) != getattr(new, name):
            parts.append(f"{'BN' if name == 'batch_norm' else 'skip'} {'on' if getattr(old, name) else 'off'}")
    for name in ("init", "activation", "optimizer", "dataset", "arch"):
        if getattr(old, name) != getattr(new, name):
            parts.append(str(getattr(old, name)))
    for name in ("depth", "width", "lr", "batch_size", "seed"):
        if name == "lr" and lr_change:
            parts.append(lr_change)
        elif getattr(old, name) != getattr(new, name):
            parts.append(f"{name.replace('_size', '')} {getattr(old, name):g}")
    if old.optimizer == new.optimizer:
        for name in sorted(set(old.optimizer_options) | set(new.optimizer_options)):
            if old.optimizer_options.get(name) != new.optimizer_options.get(name):
                parts.append(f"{name} {old.optimizer_options.get(name, 'default')}")
    return ", ".join(parts) or old.name or "same settings"


def session_series(history: dict) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """The series an overlay keeps of a run, from its history snapshot."""
    series = {key: downsample(history[name]["step"], history[name]["value"]) for key, name in KEPT if name in history}
    conds = [history[k] for k in history if k.startswith("cond/input/")]
    if conds:
        n = min(len(c["value"]) for c in conds)
        mean = np.exp(np.nanmean(np.log(np.array([c["value"][:n] for c in conds], dtype=np.float64)), axis=0))
        series[KAPPA_MEAN] = downsample(conds[0]["step"][:n], mean)
    return series


class Overlays:
    """The earlier runs on the plot (the last ``MAX_OVERLAYS``), and the list that picks the shown ones."""

    def __init__(self) -> None:
        self.items: list[Overlay] = []
        self.list = tag(W.SelectMultiple(options=[], description="earlier", rows=4, style=STYLE), "overlays")

    @property
    def shown(self) -> set[str]:
        return set(self.list.value)

    def keep(self, session: TrainingSession, new_cfg: RunConfig) -> None:
        """Keep a run that is being replaced, labelled by what differs from ``new_cfg``."""
        if session.step == 0:
            return
        history = session.history.snapshot()
        lrs = history["lr"]["value"] if "lr" in history else ()
        self._add(describe_difference(session.cfg, new_cfg, lrs), session_series(history))

    def add_saved(self, runs_dir: Path, run_id: str) -> None:
        """A saved run; ``run_id`` comes from ``list_runs``, never a path from the page."""
        run = load_run(runs_dir / run_id)
        series = {}
        for key, name in KEPT:
            points = [(r["step"], r[name]) for r in run.records if name in r]
            if points:
                series[key] = downsample(*zip(*points))
        self._add(f"saved {run_id}", series)

    def remove(self, labels: set[str]) -> None:
        self.items = [o for o in self.items if o.label not in labels]
        self.list.options = [o.label for o in self.items]

    def _add(self, label: str, series: dict) -> None:
        """A new overlay, shown with all the others; a label taken already gets a number."""
        labels = [o.label for o in self.items]
        if label in labels:
            label = f"{label} ({sum(other.startswith(label) for other in labels) + 1})"
        self.items = (self.items + [Overlay(label, series)])[-MAX_OVERLAYS:]
        self.list.options = [o.label for o in self.items]
        self.list.value = tuple(self.list.options)
