"""Earlier runs kept on the plot as overlays, each labelled by what it was.

A run replaced by a new one (another network, a reset) and a saved run from the runs folder both
become an ``Overlay``: its config, the step sizes it really trained at, a few downsampled series and
its last input-Hessian spectrum. Labels are absolute and made afresh whenever the set of runs
changes: a run number and, for every setting in which the kept runs and the current one differ,
this run's value ("run 2: orthogonal init, BN, lr 0.1→0.3"), so no label goes stale. The list
widget picks which are shown.
"""

from __future__ import annotations

import html
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import ipywidgets as W
import numpy as np

from bpviz.config import RunConfig
from bpviz.runs import describe_step_sizes, load_run

from .controls import STYLE, tag
from .panel_widget import downsample
from .panels import PALETTE

if TYPE_CHECKING:
    from bpviz.session import TrainingSession

MAX_OVERLAYS = 6
#: an overlay's series and the history series they come from
KEPT = (("batch loss", "batch_loss"), ("test accuracy", "test_accuracy"))
KAPPA_MEAN = "κ input · mean"  # the geometric mean over the blocks of the input Hessians' κ
#: earlier runs are grey, each with its own dash (the key above the figure shows which is which)
OVERLAY_DASHES = ("dash", "dot", "dashdot", "longdash", "longdashdot", "6px,2px,1px,2px")
#: the same dashes as SVG dash arrays, for the key's samples
SVG_DASHES = ("6,3", "1,3", "6,3,1,3", "10,3", "10,3,1,3", "6,2,1,2")


#: the settings a label can name, in the order it names them, each as (how to read it from a config,
#: how to say its value)
SETTINGS: tuple[tuple[Callable[[RunConfig], object], Callable[[RunConfig], str]], ...] = (
    (lambda c: c.dataset, lambda c: c.dataset),
    (lambda c: c.arch, lambda c: c.arch.upper()),
    (lambda c: (c.depth, c.width, c.widths), lambda c: "-".join(map(str, c.widths or [])) or f"{c.depth}×{c.width}"),
    (lambda c: c.activation, lambda c: c.activation),
    (
        lambda c: (c.init, c.init_std),
        lambda c: f"{c.init} init" + (f" (std {c.init_std:g})" if c.init == "gaussian" else ""),
    ),
    (lambda c: c.batch_norm, lambda c: "BN" if c.batch_norm else "no BN"),
    (lambda c: c.skip, lambda c: "skip" if c.skip else "no skip"),
    (lambda c: c.optimizer, lambda c: c.optimizer),
    (
        lambda c: sorted(c.optimizer_options.items()),
        lambda c: ", ".join(f"{k} {v}" for k, v in sorted(c.optimizer_options.items())) or "default options",
    ),
    (lambda c: c.batch_size, lambda c: f"batch {c.batch_size}"),
    (lambda c: c.seed, lambda c: f"seed {c.seed}"),
)


def describe_run(cfg: RunConfig, lrs: Sequence[float], others: Sequence[RunConfig]) -> str:
    """What ``cfg`` was, absolutely: its value of every setting in which it and ``others`` are not
    all alike, then the step sizes it really used (``lrs``, in order; the config's if empty)."""
    parts = [say(cfg) for read, say in SETTINGS if any(read(o) != read(cfg) for o in others)]
    return ", ".join([*parts, describe_step_sizes(list(lrs) or [cfg.lr], short=True)])


@dataclass
class Overlay:
    """An earlier run: ``number`` counts the page's runs (a saved run has its ``run_id`` instead)."""

    number: int
    cfg: RunConfig
    lrs: tuple[float, ...]
    series: dict[str, tuple[np.ndarray, np.ndarray]]
    spectrum: tuple[np.ndarray, np.ndarray] | None = None  # its last report's input-Hessian histogram
    run_id: str = ""
    label: str = field(default="", compare=False)

    @property
    def name(self) -> str:
        return f"saved {self.run_id}" if self.run_id else f"run {self.number}"


def session_series(history: dict) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """The series an overlay keeps of a run, from its history snapshot."""
    series = {key: downsample(history[name]["step"], history[name]["value"]) for key, name in KEPT if name in history}
    conds = [history[k] for k in history if k.startswith("cond/input/")]
    if conds:
        n = min(len(c["value"]) for c in conds)
        mean = np.exp(np.nanmean(np.log(np.array([c["value"][:n] for c in conds], dtype=np.float64)), axis=0))
        series[KAPPA_MEAN] = downsample(conds[0]["step"][:n], mean)
    return series


def report_spectrum(report: dict | None) -> tuple[np.ndarray, np.ndarray] | None:
    """A report's input-Hessian histograms summed over the blocks: (bin centres, counts)."""
    if report is None:
        return None
    edges = np.asarray(report["hist_edges"], np.float32)
    counts = [np.asarray(s["hist_counts"], np.float32) for s in report["stats"] if s["wrt"] == "input"]
    return ((edges[:-1] + edges[1:]) / 2, np.sum(counts, axis=0)) if counts else None


class Overlays:
    """The earlier runs on the plot (the last ``MAX_OVERLAYS``), and the list that picks the shown ones."""

    def __init__(self) -> None:
        self.items: list[Overlay] = []
        self.runs_started = 0  # the page's runs so far: the current one is number runs_started
        self.current: RunConfig | None = None
        self.list = tag(W.SelectMultiple(options=[], description="earlier", rows=4, style=STYLE), "overlays")

    @property
    def shown(self) -> set[str]:
        """The labels of the selected overlays."""
        chosen = set(self.list.value)
        return {o.label for o in self.items if o.name in chosen}

    def current_label(self, lrs: Sequence[float] = ()) -> str:
        """What the current run is (``lrs``: its step sizes so far), in the overlays' words."""
        if self.current is None:
            return ""
        return f"run {self.runs_started} (now): {describe_run(self.current, lrs, [o.cfg for o in self.items])}"

    def new_run(self, cfg: RunConfig) -> None:
        """A new current run: it gets the next number, and every label is made afresh."""
        self.runs_started += 1
        self.current = cfg
        self._relabel()

    def keep(self, session: TrainingSession) -> None:
        """Keep a run that is being replaced (one that took no step is nothing to compare with)."""
        if session.step == 0:
            return
        history = session.history.snapshot()
        lrs = tuple(history["lr"]["value"]) if "lr" in history else (session.cfg.lr,)
        series, spectrum = session_series(history), report_spectrum(session.report)
        self._add(Overlay(self.runs_started, session.cfg, lrs, series, spectrum))

    def add_saved(self, runs_dir: Path, run_id: str) -> None:
        """A saved run; ``run_id`` comes from ``list_runs``, never a path from the page."""
        run = load_run(runs_dir / run_id)
        series = {}
        for key, name in KEPT:
            points = [(r["step"], r[name]) for r in run.records if name in r]
            if points:
                series[key] = downsample(*zip(*points))
        lrs = tuple(lr for _, lr in run.step_sizes)
        self._add(Overlay(0, run.config, lrs, series, run_id=run_id))

    def remove(self, labels: set[str]) -> None:
        self.items = [o for o in self.items if o.label not in labels]
        self._relabel()

    def _add(self, overlay: Overlay) -> None:
        """A new overlay (a saved run already kept is not added twice), shown with all the others."""
        if overlay.run_id and any(o.run_id == overlay.run_id for o in self.items):
            return
        self.items = (self.items + [overlay])[-MAX_OVERLAYS:]
        self._relabel()
        self.list.value = tuple(o.name for o in self.items)

    def _relabel(self) -> None:
        runs = [o.cfg for o in self.items] + ([self.current] if self.current else [])
        for o in self.items:
            o.label = f"{o.name}: {describe_run(o.cfg, o.lrs, runs)}"
        chosen = set(self.list.value)
        self.list.options = [(o.label, o.name) for o in self.items]
        self.list.value = tuple(o.name for o in self.items if o.name in chosen)


def key_html(overlays: Overlays, blocks: Sequence[int], lrs: Sequence[float]) -> str:
    """Which colour is which block and which line is which run, in words a student can check
    against the settings (``lrs``: the current run's step sizes so far)."""
    swatches = " ".join(
        f'<span style="color:{PALETTE[i % len(PALETTE)]}">━━</span>&nbsp;{b}' for i, b in enumerate(blocks)
    )
    rows = [
        f"<b>solid, coloured</b>: {html.escape(overlays.current_label(lrs))} &nbsp;·&nbsp; <b>blocks</b> {swatches}"
    ]
    for j, ov in enumerate(overlays.items):
        sample = (
            f'<svg width="28" height="8"><line x1="0" y1="4" x2="28" y2="4" stroke="#888" '
            f'stroke-width="1.5" stroke-dasharray="{SVG_DASHES[j % len(SVG_DASHES)]}"/></svg>'
        )
        hidden = "" if ov.label in overlays.shown else " (hidden)"
        rows.append(f"{sample} {html.escape(ov.label)}{hidden}")
    return '<div style="font-size:12px;color:#333;line-height:1.4">' + "<br>".join(rows) + "</div>"
