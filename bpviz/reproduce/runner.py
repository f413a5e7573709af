"""One run of a reproduction, in its own folder (the runs-folder layout ``bpviz runs`` reads):
``config.json``, ``metrics.jsonl``, ``status.json`` and ``checkpoint.pt`` every ``checkpoint_every``
steps, so a run that is stopped, or whose worker dies, goes on from its last checkpoint with
``resume`` and ends with the records an uninterrupted run writes.

Records: the mean batch loss over each evaluation interval, the loss and accuracy on the whole test
set every ``eval_every`` steps (and on the whole training set at the end), and every block's
local-Hessian numbers every ``report_every`` steps under their glossary names (``bpviz.metrics``: a
``cond_lower_bound/`` is a lower bound, from Lanczos or cut by the zero floor, never shown as exact).
"""

from __future__ import annotations

import math
import shutil
from dataclasses import dataclass
from pathlib import Path

import torch

from ..checkpoint import check_resumable, load_checkpoint, save_checkpoint
from ..config import ConfigError, RunConfig
from ..hessian_report import local_hessian_report
from ..loop import Hook, every, train_loop
from ..runs import RunWriter, load_run
from ..train import Trainer

REPORT_SAMPLES = 32  # the local-Hessian report's batch (as the live dashboard's)


@dataclass(frozen=True)
class RunJob:
    """What a worker needs to do one run (plain data: it crosses process and machine boundaries)."""

    label: str
    config: dict
    folder: str
    eval_every: int
    report_every: int
    checkpoint_every: int
    resume: bool


def evaluate_split(trainer: Trainer, split: str) -> dict[str, float]:
    """Loss and accuracy on the whole split, under the split's name."""
    return {f"{split}_{k}": v for k, v in trainer.evaluate(split, max_samples=None).items()}


def _start(job: RunJob, cfg: RunConfig, folder: Path) -> tuple[Trainer, RunWriter]:
    checkpoint = folder / "checkpoint.pt"
    if folder.exists() and not job.resume:
        raise FileExistsError(f"{folder} holds a run already: resume it (--resume) or choose another --out")
    if job.resume and checkpoint.is_file():
        try:
            trainer = load_checkpoint(checkpoint, cfg)  # refuses another config, naming what differs
        except ConfigError as exc:
            raise ConfigError(f"{job.label}: {exc}") from None
        return trainer, RunWriter.reopen(folder, trainer.step_count)
    if folder.exists():  # resumed before its first checkpoint: nothing to go on from, start again
        shutil.rmtree(folder)
    trainer = Trainer(cfg)
    return trainer, RunWriter(folder.parent, cfg, run_id=folder.name)


def _ended(folder: Path, cfg: RunConfig) -> dict | None:
    """The summary of a run in ``folder`` that already ended (finished or diverged), else None; one
    saved from another config is refused, as its checkpoint would be."""
    try:
        run = load_run(folder)
    except Exception:  # no run there yet
        return None
    state = run.status.get("state")
    if state not in ("finished", "diverged"):
        return None
    check_resumable(run.config, cfg, folder)
    final = {k: v for r in run.records if r.get("step") == run.step for k, v in r.items() if k.startswith("train_")}
    return {"folder": str(folder), "state": state, "step": run.step, **final, "records": run.records}


def run_job(job: RunJob) -> dict:
    """Do one run (or the rest of it); returns its summary. Exceptions are the executor's to report."""
    cfg = RunConfig.from_dict(job.config)
    folder = Path(job.folder)
    if job.resume and (ended := _ended(folder, cfg)) is not None:
        return {"label": job.label, **ended}  # nothing left to do: a run that finished or diverged
    trainer, writer = _start(job, cfg, folder)
    losses: list[torch.Tensor] = []  # kept on the device: read once per evaluation, not every step

    def record_loss(step: int, out) -> None:
        losses.append(out.loss)

    def record_eval(step: int, out) -> None:
        mean = torch.stack(losses).mean().item() if losses else math.nan  # NaN if any step's was
        loss = out.numbers["batch_loss"] if out.numbers else float(out.loss)  # the loop's read, where it checked
        writer.append({"step": step, "batch_loss": loss, "batch_loss_mean": mean})
        losses.clear()
        if math.isfinite(loss):
            writer.append({"step": step, **evaluate_split(trainer, "test")})

    def record_report(step: int, out) -> None:
        x = trainer.x_train[:REPORT_SAMPLES]
        report = local_hessian_report(trainer.model, x, max_samples=None)
        writer.append({"step": step, "report_seconds": report.seconds, **report.named_values()})

    def checkpoint(step: int, out) -> None:
        writer.flush()
        save_checkpoint(trainer, folder / "checkpoint.pt")
        writer.set_status("running", step=step)

    if trainer.step_count == 0:  # the starting network
        writer.append({"step": 0, **evaluate_split(trainer, "test")})
        record_report(0, None)
    evals = every(job.eval_every, cfg.steps)
    hooks = [
        Hook(lambda step: True, record_loss, on_divergence=True),
        Hook(evals, record_eval, on_divergence=True),
        Hook(every(job.report_every, cfg.steps), record_report),
        Hook(every(job.checkpoint_every, cfg.steps), checkpoint),
    ]
    end = train_loop(trainer, cfg.steps, hooks, check=every(10, cfg.steps))
    final = evaluate_split(trainer, "train") if end.status == "finished" else {}
    if final:
        writer.append({"step": end.step, **final})
    state = "finished" if end.status == "finished" else "diverged"
    writer.close(state, step=end.step, reason=end.reason)
    # the records travel with the summary: a Ray worker's folder may be on a disk the driver cannot read
    records = load_run(folder).records
    return {"label": job.label, "folder": str(folder), "state": state, "step": end.step, **final, "records": records}
