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

from .bounds import merge_bounds
from .controls import STYLE, tag
from .panel_widget import downsample
from .panels import PALETTE

if TYPE_CHECKING:
    from bpviz.session import TrainingSession

MAX_OVERLAYS = 6
#: an overlay's series and the history series they come from
KEPT = (("batch loss", "batch_loss"), ("test accuracy", "test_accuracy"))
KAPPA_MEAN = "κ input · mean"  # the geometric mean over the blocks of the input Hessians' κ (kappa_mean)
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
    #: per point of a series, whether it is only a lower bound (the mean κ, where a block's was one)
    bounds: dict[str, np.ndarray] = field(default_factory=dict)
    spectrum_estimated: bool = False  # some block's histogram is a stochastic Lanczos quadrature estimate
    label: str = field(default="", compare=False)

    @property
    def name(self) -> str:
        return f"saved {self.run_id}" if self.run_id else f"run {self.number}"


def kappa_mean(history: dict) -> dict | None:
    """The geometric mean over all blocks of the input Hessians' κ, at the reports where every block
    has one, exact or a lower bound (``cond_lower_bound/``): the mean is then a lower bound too, and
    ``bound`` says where. NaN where a block's κ is (a diverged run)."""
    blocks = sorted(
        {int(k.rsplit("/", 1)[1]) for k in history if k.startswith(("cond/input/", "cond_lower_bound/input/"))}
    )
    per_block = []
    for b in blocks:
        exact, bound = history.get(f"cond/input/{b}"), history.get(f"cond_lower_bound/input/{b}")
        merged = merge_bounds(exact, bound) if bound else {**exact, "bound": [False] * len(exact["step"])}
        per_block.append({s: (v, f) for s, v, f in zip(merged["step"], merged["value"], merged["bound"])})
    if not per_block:
        return None
    steps = sorted(set.intersection(*(set(points) for points in per_block)))
    values = np.array([[points[s][0] for s in steps] for points in per_block], np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.exp(np.log(values).mean(axis=0))
    bound = np.array([[points[s][1] for s in steps] for points in per_block]).any(axis=0)
    return {"step": steps, "value": mean.tolist(), "bound": bound.tolist()}


def session_series(history: dict) -> tuple[dict[str, tuple[np.ndarray, np.ndarray]], dict[str, np.ndarray]]:
    """The series an overlay keeps of a run, from its history snapshot, and where each is a lower bound."""
    series = {key: downsample(history[name]["step"], history[name]["value"]) for key, name in KEPT if name in history}
    bounds = {}
    mean = kappa_mean(history)
    if mean and mean["step"]:
        series[KAPPA_MEAN] = downsample(mean["step"], mean["value"])
        bounds[KAPPA_MEAN] = downsample(mean["step"], mean["bound"])[1] > 0.5
    return series, bounds


def records_history(records: list[dict]) -> dict:
    """A saved run's records as a history snapshot, ``{name: {"step": [...], "value": [...]}}``: the
    series an overlay keeps."""
    names = {name for _, name in KEPT}
    history: dict[str, dict[str, list]] = {}
    for record in records:
        for name, value in record.items():
            if name in names or name.startswith(("cond/input/", "cond_lower_bound/input/")):
                series = history.setdefault(name, {"step": [], "value": []})
                series["step"].append(record["step"])
                series["value"].append(value)
    return history


def report_spectrum(report: dict | None) -> tuple[tuple[np.ndarray, np.ndarray] | None, bool]:
    """A report's input-Hessian histograms summed over the blocks: (bin centres, counts), and whether
    the sum is an estimate (some block's histogram is one)."""
    stats = [s for s in report["stats"] if s["wrt"] == "input"] if report else []
    if not stats:
        return None, False
    edges = np.asarray(report["hist_edges"], np.float32)
    counts = np.sum([np.asarray(s["hist_counts"], np.float32) for s in stats], axis=0)
    return ((edges[:-1] + edges[1:]) / 2, counts), any(s["method"] != "exact" for s in stats)


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
        """Keep a run that is being replaced (one that took no step is nothing to compare with, and
        the run after it takes its number: the key never names a run the page does not show)."""
        if session.step == 0:
            self.runs_started -= 1
            return
        history = session.history.snapshot()
        lrs = tuple(history["lr"]["value"]) if "lr" in history else (session.cfg.lr,)
        (series, bounds), (spectrum, estimated) = session_series(history), report_spectrum(session.report)
        self._add(
            Overlay(self.runs_started, session.cfg, lrs, series, spectrum, bounds=bounds, spectrum_estimated=estimated)
        )

    def add_saved(self, runs_dir: Path, run_id: str) -> None:
        """A saved run, with the series a kept run has (its records hold the same numbers; not its
        last spectrum, which they do not hold); ``run_id`` comes from ``list_runs``, never a path
        from the page."""
        run = load_run(runs_dir / run_id)
        series, bounds = session_series(records_history(run.records))
        lrs = tuple(lr for _, lr in run.step_sizes)
        self._add(Overlay(0, run.config, lrs, series, run_id=run_id, bounds=bounds))

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
