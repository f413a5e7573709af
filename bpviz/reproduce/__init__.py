"""``bpviz reproduce NAME``: a paper's headline experiment from one command (bpviz.reproduce.experiments
lists them), its runs in worker processes, results as JSON, CSV and an HTML page (and, with ``png``,
its figures as PNG files)."""

from __future__ import annotations

import re
from pathlib import Path

from ..config import ConfigError
from ..data import load_dataset
from ..synthetic_files import WRITERS
from .executor import run_local
from .experiments import EXPERIMENTS, Experiment, get_experiment, tiny, with_data_dir
from .report import FigureError, figure_writer, gather, write_results
from .runner import RunJob

__all__ = ["EXPERIMENTS", "FigureError", "reproduce", "plan"]

#: images per split in a --tiny data folder
TINY_FILES = {"n_train": 512, "n_test": 256}


def _slug(label: str) -> str:
    return re.sub(r"[^a-z0-9.=]+", "-", label.lower()).strip("-")


def plan(name: str, out: str | Path, data_dir: str | None = None, is_tiny: bool = False) -> Experiment:
    """The experiment as it will run: at full size reading ``data_dir`` (checked now, so missing or
    wrong files are named before anything trains), or --tiny on synthetic files written under ``out``."""
    experiment = get_experiment(name)
    if is_tiny:
        folder = Path(out) / "tiny-data" / experiment.dataset
        if not folder.exists():
            WRITERS[experiment.dataset](folder, **TINY_FILES)
        experiment = tiny(experiment, str(folder))
    else:
        if data_dir is None:
            raise ConfigError(f"data_dir: {name} reads {experiment.dataset}'s original files: give --data-dir DIR")
        experiment = with_data_dir(experiment, str(Path(data_dir).expanduser()))
    load_dataset(experiment.runs[0].cfg.replace(n_train=1, n_test=1))  # DataError names what is missing
    return experiment


def reproduce(
    name: str,
    out: str | Path,
    data_dir: str | None = None,
    is_tiny: bool = False,
    resume: bool = False,
    workers: int | None = None,
    ray: str | None = None,
    quiet: bool = False,
    command: str = "",
    png: bool = False,
) -> tuple[dict, list[Path]]:
    """Run (or, with ``resume``, finish) the experiment, in local worker processes or, given ``ray``
    (``auto`` or HOST:PORT), on a Ray cluster; returns its results and the files written. The PNG
    writer is looked up first, so a missing one is named before anything trains."""
    out = Path(out)
    write_png = figure_writer("png") if png else None
    experiment = plan(name, out, data_dir, is_tiny)
    jobs = [
        RunJob(
            label=run.label,
            config=run.cfg.to_dict(),
            folder=str(out / "runs" / _slug(run.label)),
            eval_every=experiment.eval_every,
            report_every=experiment.report_every,
            checkpoint_every=experiment.checkpoint_every,
            resume=resume,
        )
        for run in experiment.runs
    ]
    started = [job.folder for job in jobs if Path(job.folder).exists()]
    if started and not resume:
        raise ConfigError(
            f"out: {out} holds runs of an earlier reproduction ({len(started)}): add --resume, or another --out"
        )
    if ray is not None:
        from .ray_executor import run_ray

        summaries = run_ray(jobs, experiment.total_steps, ray, quiet=quiet)
    else:
        summaries = run_local(jobs, experiment.total_steps, workers=workers, quiet=quiet)
    result = gather(experiment, summaries)
    paths = write_results(result, out, command or f"bpviz reproduce {name}")
    if write_png is not None:
        try:
            paths += write_png(result, out)
        except Exception as exc:  # no browser, a renderer crash: the runs and results stay
            written = ", ".join(str(p) for p in paths)
            raise FigureError(f"png: the PNG figures could not be written ({exc}); written: {written}") from exc
    return result, paths
