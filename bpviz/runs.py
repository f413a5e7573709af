"""Runs on disk: one folder per run with ``config.json``, ``metrics.jsonl`` and ``status.json``.

Metrics are appended as JSON lines and flushed at least every second, so whatever was flushed
survives a killed process; a truncated last line is skipped on load. Listing a runs directory
reports corrupt or foreign entries and goes on with the rest.
"""

from __future__ import annotations

import csv
import json
import math
import os
import re
import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .config import ConfigError, RunConfig

FLUSH_SECONDS = 1.0
#: 2: the per-step mini-batch loss is ``batch_loss`` (it was ``train_loss``, which now means the loss
#: on the training split, as everywhere else; see ``bpviz.metrics``)
METRICS_VERSION = 2


def jsonable(value: Any) -> Any:
    """NaN and Inf as strings, so the lines stay strict JSON that any tool can read."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {k: jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    return value


def _from_json(value: Any) -> Any:
    if value in ("nan", "inf", "-inf"):
        return float(value)
    if isinstance(value, dict):
        return {k: _from_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_from_json(v) for v in value]
    return value


def new_run_id(cfg: RunConfig) -> str:
    slug = re.sub(r"[^a-z0-9]+", "-", (cfg.name or cfg.optimizer).lower()).strip("-")[:40] or "run"
    return f"{time.strftime('%Y%m%d-%H%M%S')}-{slug}-{secrets.token_hex(2)}"


class RunWriter:
    """Appends one run's records; the owner calls ``append`` from its worker thread."""

    def __init__(self, runs_dir: str | Path, cfg: RunConfig, run_id: str | None = None):
        self.path = Path(runs_dir) / (run_id or new_run_id(cfg))
        self.path.mkdir(parents=True, exist_ok=False)
        (self.path / "config.json").write_text(cfg.to_json(indent=1))
        self._file = (self.path / "metrics.jsonl").open("a", encoding="utf-8")
        self._last_flush = time.monotonic()
        self.set_status("running")

    @classmethod
    def reopen(cls, path: str | Path, up_to_step: int) -> RunWriter:
        """The writer of an existing run folder that goes on from ``up_to_step`` (a checkpoint's):
        records past that step (written after the checkpoint, before the run stopped) are dropped,
        so the resumed run's records are those of an uninterrupted one."""
        writer = cls.__new__(cls)
        writer.path = Path(path)
        metrics = writer.path / "metrics.jsonl"
        kept = [line for line in _lines(metrics) if json.loads(line).get("step", 0) <= up_to_step]
        metrics.write_text("".join(line + "\n" for line in kept))
        writer._file = metrics.open("a", encoding="utf-8")
        writer._last_flush = time.monotonic()
        writer.set_status("running", step=up_to_step)
        return writer

    def append(self, record: dict) -> None:
        self._file.write(json.dumps(jsonable(record)) + "\n")
        if time.monotonic() - self._last_flush >= FLUSH_SECONDS:
            self.flush()

    def flush(self) -> None:
        self._file.flush()
        self._last_flush = time.monotonic()

    def set_status(self, state: str, **info: Any) -> None:
        """Replace status.json atomically (write, then rename)."""
        tmp = self.path / "status.json.tmp"
        status = {"state": state, "updated": time.time(), "metrics_version": METRICS_VERSION, **info}
        tmp.write_text(json.dumps(jsonable(status)))
        os.replace(tmp, self.path / "status.json")

    def close(self, state: str, **info: Any) -> None:
        if not self._file.closed:
            self.flush()
            self._file.close()
        self.set_status(state, **info)


@dataclass
class SavedRun:
    path: Path
    config: RunConfig
    records: list[dict]
    status: dict
    warnings: list[str] = field(default_factory=list)

    @property
    def run_id(self) -> str:
        return self.path.name

    @property
    def step_sizes(self) -> list[tuple[int, float]]:
        """(step, lr) for the start and every change: the step sizes the run really trained at
        (``config.lr`` is only the first); runs saved before lr was recorded give the config's."""
        changes = [(r["step"], r["lr"]) for r in self.records if "lr" in r]
        return changes or [(0, self.config.lr)]

    @property
    def step(self) -> int:
        """The step the run had reached when its status was last written."""
        return int(self.status.get("step", 0))

    @property
    def checkpoint(self) -> Path | None:
        """``checkpoint.pt`` in the run's folder (finished and stopped runs leave one), else None."""
        path = self.path / "checkpoint.pt"
        return path if path.is_file() else None

    def resume_config(self) -> RunConfig:
        """The config to go on under: to the run's own step count if it stopped early, else for as
        many steps again."""
        steps = self.config.steps
        return self.config if self.step < steps else self.config.replace(steps=self.step + steps)

    def describe_step_sizes(self) -> str:
        """'lr 0.3' or 'lr 0.3→10→1', as listings show it."""
        return describe_step_sizes([lr for _, lr in self.step_sizes])


def describe_step_sizes(lrs: Sequence[float], short: bool = False) -> str:
    """The step sizes a run used, in order: 'lr 0.3', 'lr 0.3→10→1', or with ``short`` (labels on a
    plot) only the first and last: 'lr 0.3→…→1'."""
    changes = [lr for i, lr in enumerate(lrs) if i == 0 or lr != lrs[i - 1]]
    if short and len(changes) > 2:
        changes = [changes[0], "…", changes[-1]]
    return "lr " + "→".join(v if isinstance(v, str) else f"{v:.3g}" for v in changes)


class RunError(ValueError):
    """A folder that is not a readable bpviz run."""


def load_run(path: str | Path) -> SavedRun:
    """Read a run folder; skip (and report in ``warnings``) a truncated or corrupt metrics line."""
    path = Path(path)
    if not (path / "config.json").is_file():
        raise RunError(f"{path}: not a bpviz run (no config.json)")
    try:
        config = RunConfig.from_json((path / "config.json").read_text())
    except (ConfigError, ValueError, TypeError, OSError, RecursionError) as exc:
        raise RunError(f"{path}: unreadable config.json ({exc})") from None
    records, warnings = [], []
    metrics = path / "metrics.jsonl"
    lines: list[str] = []
    if metrics.is_file():
        try:
            lines = metrics.read_text(encoding="utf-8", errors="replace").splitlines()
        except OSError as exc:
            warnings.append(f"{metrics.name} unreadable ({exc})")
        for i, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
                if not isinstance(record, dict):
                    raise ValueError("not an object")
                records.append(_from_json(record))
            except (ValueError, RecursionError):
                warnings.append(
                    f"{metrics.name} line {i}: "
                    + ("truncated last line skipped" if i == len(lines) else "corrupt line skipped")
                )
    status: Any = {"state": "unknown"}
    try:
        status = json.loads((path / "status.json").read_text())
        if not isinstance(status, dict):
            raise ValueError("not an object")
    except (OSError, ValueError, RecursionError):
        status = {"state": "unknown"}
        warnings.append("status.json missing or unreadable")
    if status.get("metrics_version", 1) < 2:  # one meaning per name, in old runs too
        records = [{("batch_loss" if k == "train_loss" else k): v for k, v in r.items()} for r in records]
    return SavedRun(path=path, config=config, records=records, status=_from_json(status), warnings=warnings)


def list_runs(runs_dir: str | Path) -> tuple[list[SavedRun], list[str]]:
    """Every readable run (oldest first) and a problem line for each entry that is not one."""
    root = Path(runs_dir)
    if not root.is_dir():
        return [], []
    runs, problems = [], []
    try:
        entries = sorted(root.iterdir())
    except OSError as exc:
        return [], [f"{root}: cannot list ({exc})"]
    for entry in entries:
        if not entry.is_dir():
            problems.append(f"{entry.name}: not a run folder, skipped")
            continue
        try:
            runs.append(load_run(entry))
        except RunError as exc:
            problems.append(f"{entry.name}: {exc}, skipped")
    return runs, problems


def export_csv(run: SavedRun, out: str | Path) -> Path:
    """The run's records as CSV, one column per metric (blank where a record lacks it)."""
    out = Path(out)
    columns = list(dict.fromkeys(k for r in run.records for k in r if not isinstance(r[k], (dict, list))))
    with out.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(run.records)
    return out


def _lines(path: Path) -> list[str]:
    """The complete JSON lines of a metrics file (a truncated last line, from a killed writer, is not)."""
    out = []
    for line in path.read_text(encoding="utf-8").splitlines() if path.is_file() else []:
        try:
            json.loads(line)
        except ValueError:
            continue
        out.append(line)
    return out
