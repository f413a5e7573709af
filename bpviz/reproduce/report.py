"""A reproduction's results: ``results.json`` (everything: the recipe and where each setting comes
from, every run's summary and records), ``results.csv`` (one row per record of every run) and
``results.html``, laid out as the papers' figures are (the loss and test accuracy over training for
paper 1, final loss and accuracy over step sizes for paper 2), with what neither paper shows: the
largest local-Hessian condition number over the blocks, over training, for every run."""

from __future__ import annotations

import csv
import html
import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import entry_points
from pathlib import Path

from .. import html_plot
from ..config import ConfigError
from ..runs import jsonable, load_run
from .experiments import Experiment, get_experiment

#: what a --tiny result says of itself, on the page and under every PNG's title
TINY_NOTE = "synthetic data in the real file formats; it shows the pipeline works, not the paper's result"


def largest_kappa(record: dict) -> tuple[float | None, bool]:
    """The largest input-Hessian κ over the blocks in a report record, and whether any block's is only
    a lower bound (then the largest is a lower bound as well)."""
    values = {k: v for k, v in record.items() if k.startswith(("cond/input/", "cond_lower_bound/input/"))}
    finite = [v for v in values.values() if isinstance(v, float) and math.isfinite(v)]
    return (max(finite) if finite else None), any(k.startswith("cond_lower_bound/") for k in values)


def gather(experiment: Experiment, summaries: list[dict]) -> dict:
    runs = []
    for run, summary in zip(experiment.runs, summaries, strict=True):
        summary = dict(summary)
        records = summary.pop("records", None)
        if records is None:  # a run that failed: what its folder holds, if anything
            try:
                records = load_run(summary["folder"]).records
            except Exception:
                records = []
        runs.append({"label": run.label, "config": run.cfg.to_dict(), "summary": summary, "records": records})
    return {
        "experiment": experiment.name,
        "title": experiment.title,
        "tiny": experiment.tiny,
        "sources": experiment.sources,
        "notes": list(experiment.notes),
        "runs": runs,
    }


def _series(runs: list[dict], key: str) -> dict:
    return {
        r["label"]: ([x["step"] for x in r["records"] if key in x], [x[key] for x in r["records"] if key in x])
        for r in runs
    }


def _kappa_series(runs: list[dict]) -> tuple[dict, bool]:
    series, bound = {}, False
    for r in runs:
        steps, values = [], []
        for record in r["records"]:
            kappa, is_bound = largest_kappa(record)
            if kappa is not None:
                steps.append(record["step"])
                values.append(kappa)
                bound = bound or is_bound
        series[r["label"]] = (steps, values)
    return series, bound


def final_rows(result: dict) -> list[dict]:
    rows = []
    for r in result["runs"]:
        cfg, summary, records = r["config"], r["summary"], r["records"]
        tests = [x for x in records if "test_accuracy" in x]
        rows.append(
            {
                "run": r["label"],
                "optimizer": cfg["optimizer"],
                "lr": cfg["lr"],
                "state": summary["state"],
                "step": summary.get("step"),
                "final_train_loss": summary.get("train_loss"),
                "final_train_accuracy": summary.get("train_accuracy"),
                "final_test_accuracy": tests[-1]["test_accuracy"] if tests else None,
                "best_test_accuracy": max((x["test_accuracy"] for x in tests), default=None),
                "error": summary.get("error", ""),
            }
        )
    return rows


def write_results(result: dict, out: Path, command: str) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / "results.json", out / "results.csv", out / "results.html"]
    paths[0].write_text(json.dumps(jsonable({**result, "command": command}), indent=1))
    keys = sorted({k for r in result["runs"] for record in r["records"] for k in record} - {"step"})
    with paths[1].open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["run", "step", *keys])
        for r in result["runs"]:
            for record in r["records"]:
                writer.writerow([r["label"], record["step"], *(record.get(k, "") for k in keys)])
    paths[2].write_text(_page(result, command))
    return paths


class FigureError(RuntimeError):
    """Figure files could not be written (no browser for kaleido, a renderer crash); the results
    written before them are named in the message."""


@dataclass(frozen=True)
class Chart:
    """One figure of a results page, as data: the HTML page draws it as SVG, and the PNG writer
    (``bpviz.widgets.report_png``, plotly + kaleido: the engine imports neither) as a PNG."""

    name: str  # its PNG's file name, without .png
    title: str
    xlabel: str
    ylabel: str
    series: dict[str, tuple[list, list]]
    logx: bool = False
    logy: bool = False
    note: str = ""  # shown under it


def charts(result: dict) -> list[Chart]:
    """The page's figures, laid out as the papers' are, then the largest κ over the blocks."""
    runs = result["runs"]
    if any(r["config"]["optimizer"] != runs[0]["config"]["optimizer"] for r in runs) and _is_sweep(runs):
        figures = _sweep_charts(runs, final_rows(result))
    else:
        figures = [
            Chart(
                "loss", "training loss (mean batch loss)", "step", "loss", _series(runs, "batch_loss_mean"), logy=True
            ),
            Chart(
                "test-accuracy", "test accuracy (whole test set)", "step", "accuracy", _series(runs, "test_accuracy")
            ),
        ]
    kappa, bound = _kappa_series(runs)
    title = "largest input-Hessian κ over the blocks" + (" (≥: some blocks' κ are lower bounds)" if bound else "")
    return [*figures, Chart("kappa", title, "step", "κ", kappa, logy=True)]


def _page(result: dict, command: str) -> str:
    parts = [f"<p>Produced by <code>{html.escape(command)}</code>.</p>"]
    if result["tiny"]:
        parts.append(f"<p><b>--tiny</b>: {TINY_NOTE}</p>")
    parts.append("<h2>Where each setting comes from</h2>")
    parts.append(
        html_plot.table([{"setting": k, "source": v} for k, v in result["sources"].items()], ["setting", "source"])
    )
    for chart in charts(result):
        parts.append(
            html_plot.line_chart(chart.series, chart.title, chart.xlabel, chart.ylabel, chart.logx, chart.logy)
        )
        if chart.note:
            parts.append(f"<p>{html.escape(chart.note)}</p>")
    rows = final_rows(result)
    parts.append("<h2>Final numbers</h2>")
    parts.append(html_plot.table(rows, list(rows[0])))
    return html_plot.page(result["title"], parts)


def _is_sweep(runs: list[dict]) -> bool:
    return len({r["config"]["lr"] for r in runs}) > 1


def _sweep_charts(runs: list[dict], rows: list[dict]) -> list[Chart]:
    """As paper 2's: per algorithm, the final loss and accuracy over the step size; then the curves."""
    loss, acc = {}, {}
    for algorithm in dict.fromkeys(row["optimizer"] for row in rows):
        done = [row for row in rows if row["optimizer"] == algorithm and row["state"] == "finished"]
        loss[algorithm] = ([row["lr"] for row in done], [row["final_train_loss"] for row in done])
        acc[algorithm] = ([row["lr"] for row in done], [row["final_test_accuracy"] for row in done])
    left_out = "Runs that diverged are left out of this chart; the table lists them."
    figures = [
        Chart(
            "final-loss", "final training loss (whole training set)", "step size", "loss", loss, True, True, left_out
        ),
        Chart("final-test-accuracy", "final test accuracy", "step size", "accuracy", acc, logx=True, note=left_out),
    ]
    for algorithm in loss:
        mine = [r for r in runs if r["config"]["optimizer"] == algorithm]
        series = _series(mine, "batch_loss_mean")
        figures.append(
            Chart(f"loss-{algorithm}", f"{algorithm}: training loss over steps", "step", "loss", series, logy=True)
        )
    return figures


def figure_writer(kind: str = "png") -> Callable[[dict, Path], list[Path]]:
    """The installed writer of figure files (an entry point in the ``bpviz.figure_writers`` group:
    ``png`` is bpviz.widgets.report_png's, with bpviz[figures]); found before anything trains."""
    found = [ep for ep in entry_points(group="bpviz.figure_writers") if ep.name == kind]
    hint = "pip install 'bpviz[figures]' (plotly, kaleido) and a Chrome or Chromium"
    if not found:
        raise ConfigError(f"png: no {kind} figure writer is installed: {hint}")
    try:
        return found[0].load()
    except ImportError as exc:
        raise ConfigError(f"png: the {kind} figure writer cannot be loaded ({exc}): {hint}") from None


def recipe_lines(name: str) -> list[str]:
    """A reproduction's title and where each of its settings comes from (``bpviz reproduce NAME``)."""
    experiment = get_experiment(name)
    lines = [experiment.title, f"{len(experiment.runs)} runs of {experiment.runs[0].cfg.steps:,} steps"]
    return lines + [f"- {setting}: {source}" for setting, source in experiment.sources.items()]


def reproduction_rows(result: dict) -> list[dict]:
    """Per run of a reproduction's results: how it ended, its last evaluation on the full test set
    and its train loss at the end (NaN where it has none: a run that diverged or failed)."""
    rows = []
    for run in result["runs"]:
        tested = [r for r in run["records"] if "test_accuracy" in r]
        last = tested[-1] if tested else {}
        rows.append(
            {
                "run": run["label"],
                "state": run["summary"]["state"],
                "step": run["summary"].get("step", math.nan),
                "test accuracy": last.get("test_accuracy", math.nan),
                "at step": last.get("step", math.nan),
                "final train loss": run["summary"].get("train_loss", math.nan),
            }
        )
    return rows
