"""What the teacher's overview shows of each student: their latest run, read from the runs folders.

The store is the runs folders the dashboard already writes (``bpviz.runs``), one per student under
``<class>/runs/<user>/``: each run has exactly one writer (that student's kernel), which appends
metrics lines and replaces ``status.json`` by an atomic rename, so readers never see a half-written
status and skip a half-written last line. No second store to keep in step, nothing to lock, and the
same files ``bpviz runs`` and the dashboard's compare menu read. The overview reads only each file's
tail, so a 200 000-step run costs it the same as a short one."""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from bpviz.config import RunConfig
from bpviz.runs import describe_step_sizes

TAIL_BYTES = 256 * 1024  # the last ~2000 records: the latest loss, step size and (usually) κ report
LOSS_POINTS = 60
#: a running run writes a record every step and flushes each second: this long without a write means
#: its kernel is gone (a closed tab whose page shut it down, a culled server), whatever status.json says
SILENT_SECONDS = 20.0


@dataclass
class StudentRun:
    """One student's latest run, as the overview shows it."""

    user: str
    run_id: str = ""
    settings: str = ""
    state: str = "no run yet"
    step: int = 0
    steps: int = 0
    batch_loss: float | None = None
    test_loss: float | None = None
    test_accuracy: float | None = None
    kappa_max: float | None = None  # the largest input-Hessian κ over the blocks at the last report
    kappa_bound: bool = False  # True: at least one block's κ is only a certified lower bound
    kappa_step: int | None = None
    updated_s_ago: float | None = None
    losses: list[tuple[int, float]] = field(default_factory=list)  # (step, batch loss), thinned
    runs: int = 0  # how many runs the student has on disk

    def to_json(self) -> dict:
        return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in asdict(self).items()}


def run_folders(student_dir: Path) -> list[Path]:
    """Every run folder of a student (``<page>/<run>/`` as the dashboard writes, or ``<run>/``)."""
    found = [p.parent for p in student_dir.glob("*/config.json")] + [
        p.parent for p in student_dir.glob("*/*/config.json")
    ]
    return sorted(found, key=lambda p: modified(p))


def modified(run: Path) -> float:
    return max(
        (f.stat().st_mtime for f in (run / "metrics.jsonl", run / "status.json", run / "config.json") if f.exists()),
        default=0.0,
    )


def tail_records(path: Path, size: int = TAIL_BYTES) -> list[dict]:
    """The complete JSON lines in the last ``size`` bytes of a metrics file (a cut first line and a
    half-written last one are skipped)."""
    if not path.is_file():
        return []
    with path.open("rb") as f:
        f.seek(0, 2)
        end = f.tell()
        f.seek(max(0, end - size))
        lines = f.read().split(b"\n")
    if end > size:
        lines = lines[1:]
    records = []
    for line in lines:
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict):
            records.append(record)
    return records


def number(value) -> float | None:
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None
    return value


def describe(cfg: RunConfig) -> str:
    shape = "-".join(map(str, cfg.widths or [])) or f"{cfg.depth}×{cfg.width}"
    net = f"{cfg.arch} {shape} {cfg.activation}, {cfg.init} init"
    tricks = [t for t, on in (("BN", cfg.batch_norm), ("skip", cfg.skip)) if on]
    head = f"preset {cfg.name}: " if cfg.name else ""
    return f"{head}{cfg.dataset}, {net}{', ' + ' + '.join(tricks) if tricks else ''}, {cfg.optimizer}"


def summarise(user: str, student_dir: Path, now: float | None = None) -> StudentRun:
    """The student's latest run (by last write); a folder that is not a readable run is passed over."""
    now = time.time() if now is None else now
    folders = run_folders(student_dir) if student_dir.is_dir() else []
    out = StudentRun(user=user, runs=len(folders))
    for run in reversed(folders):
        try:
            cfg = RunConfig.from_json((run / "config.json").read_text())
            status = json.loads((run / "status.json").read_text())
        except (OSError, ValueError, TypeError):
            continue
        records = tail_records(run / "metrics.jsonl")
        lrs = [r["lr"] for r in records if "lr" in r] or [cfg.lr]
        out.run_id, out.steps, out.state = run.name, cfg.steps, str(status.get("state", "unknown"))
        out.settings = f"{describe(cfg)}, {describe_step_sizes(lrs, short=True)}"
        out.step = max([int(r.get("step", 0)) for r in records] + [int(status.get("step", 0))])
        out.updated_s_ago = round(now - modified(run), 1)
        if out.state == "running" and out.updated_s_ago > SILENT_SECONDS:
            out.state = "interrupted"
        elif out.state == "finished" and out.step < out.steps:  # Stop, or its kernel shut down
            out.state = "stopped early"
        losses = [(int(r["step"]), number(r["batch_loss"])) for r in records if "batch_loss" in r]
        losses = [(s, v) for s, v in losses if v is not None]
        out.batch_loss = losses[-1][1] if losses else None
        out.losses = losses[:: max(1, len(losses) // LOSS_POINTS)][-LOSS_POINTS:]
        for key, attr in (("test_loss", "test_loss"), ("test_accuracy", "test_accuracy")):
            values = [number(r[key]) for r in records if key in r]
            setattr(out, attr, values[-1] if values else None)
        reports = [r for r in records if any(k.startswith(("cond/input/", "cond_lower_bound/input/")) for k in r)]
        if reports:
            last = reports[-1]
            kappas = {k: number(v) for k, v in last.items() if k.startswith(("cond/input/", "cond_lower_bound/input/"))}
            finite = [v for v in kappas.values() if v is not None and math.isfinite(v)]
            out.kappa_max = max(finite) if finite else None
            out.kappa_bound = any(k.startswith("cond_lower_bound/") for k in kappas)
            out.kappa_step = int(last.get("step", 0))
        return out
    return out


def class_overview(class_dir: Path, users: list[str]) -> list[StudentRun]:
    return [summarise(user, class_dir / "runs" / user) for user in users]
