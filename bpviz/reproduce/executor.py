"""Where a reproduction's runs go: local worker processes by default (each run in a process of its
own, one compute thread per process unless the run says otherwise), with a progress bar over all
steps read from the runs' own records. A run that raises, or whose worker process dies, is reported
and tried again from its last checkpoint, up to ``retries`` times; nothing a finished run wrote is
lost, and a run that still fails is listed in the results as failed with its error.
"""

from __future__ import annotations

import multiprocessing
import os
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import replace
from pathlib import Path

from ..runs import load_run
from .runner import RunJob, run_job

#: how worker processes start: "spawn", so that no forked torch state (threads, locks) is inherited
START_METHOD = "spawn"


def current_step(folder: str) -> int:
    """The last step a run's records reached (0 before its first)."""
    try:
        records = load_run(Path(folder)).records
    except Exception:  # not written yet, or being written: progress is only a display
        return 0
    return max((int(r.get("step", 0)) for r in records), default=0)


class Progress:
    """A tqdm bar (a plain line every few seconds without tqdm) over every run's steps, read from the
    runs' records, or, where the runs write none (``total`` 0: ``bpviz compare``'s), over the runs
    that ended. ``desc`` names the command."""

    def __init__(self, jobs: Sequence[RunJob], total: int, quiet: bool = False, desc: str = "reproduce"):
        self.jobs, self.quiet, self.desc = jobs, quiet, desc
        self.by_steps = total > 0
        self.total, self.unit = (total, "step") if self.by_steps else (len(jobs), "run")
        self._printed = 0.0
        try:
            from tqdm import tqdm

            self.bar = None if quiet else tqdm(total=self.total, unit=self.unit, desc=desc)
        except ImportError:
            self.bar = None

    def update(self, ended: int) -> None:
        """Show how far the runs are (``ended``: how many of them ended so far)."""
        done = sum(current_step(job.folder) for job in self.jobs) if self.by_steps else ended
        if self.bar is not None:
            self.bar.update(done - self.bar.n)
        elif not self.quiet and (time.monotonic() - self._printed > 5 or done == self.total):
            print(f"{self.desc}: {done}/{self.total} {self.unit}s", flush=True)
            self._printed = time.monotonic()

    def close(self, ended: int) -> None:
        self.update(ended)
        if self.bar is not None:
            self.bar.close()


class Attempts:
    """How often each job was tried, and whether a failed one gets another go: the one retry rule of
    both executors (a retry goes on from the last checkpoint the failed attempt left, if any)."""

    def __init__(self, jobs: Sequence[RunJob], retries: int, quiet: bool, where: str = "", desc: str = "reproduce"):
        self.jobs, self.retries, self.quiet, self.where, self.desc = jobs, retries, quiet, where, desc
        self.tries = dict.fromkeys(range(len(jobs)), 0)

    def start(self, i: int) -> RunJob:
        self.tries[i] += 1
        return self.jobs[i] if self.tries[i] == 1 else replace(self.jobs[i], resume=True)

    def failed(self, i: int, error: str) -> dict | None:
        """None when the job is to be tried again (and says so), else its summary as a failed run."""
        job = self.jobs[i]
        if self.tries[i] <= self.retries:
            if not self.quiet:
                again = "trying again from its last checkpoint"
                print(f"{self.desc}: {job.label} failed{self.where} ({error}); {again}", flush=True)
            return None
        return {"label": job.label, "folder": job.folder, "state": "failed", "error": error}


def run_local(
    jobs: Sequence[RunJob],
    total_steps: int,
    workers: int | None = None,
    retries: int = 1,
    quiet: bool = False,
    target: Callable[[RunJob], dict] = run_job,
    desc: str = "reproduce",
) -> list[dict]:
    """Every job in worker processes, at most ``workers`` at a time; returns one summary per job,
    in the jobs' order. A dead worker breaks its pool: the jobs it was running are tried again in a
    new one. ``desc`` names the command in the progress bar and the messages."""
    workers = max(1, min(workers or os.cpu_count() or 1, len(jobs)))
    threads = max(1, (os.cpu_count() or 1) // workers)
    jobs = [_with_threads(job, threads) for job in jobs]
    results: dict[int, dict] = {}
    attempts = Attempts(jobs, retries, quiet, desc=desc)
    progress = Progress(jobs, total_steps, quiet, desc)
    queue = deque(range(len(jobs)))
    while queue:
        context = multiprocessing.get_context(START_METHOD)
        with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
            running: dict[Future, int] = {}
            broken = False
            while running or (queue and not broken):
                while queue and not broken and len(running) < workers:
                    i = queue.popleft()
                    running[pool.submit(target, attempts.start(i))] = i
                done, _ = wait(running, timeout=0.5, return_when=FIRST_COMPLETED)
                progress.update(len(results))
                for future in done:
                    i = running.pop(future)
                    error = None
                    try:
                        results[i] = future.result()
                    except BrokenProcessPool as exc:
                        broken, error = True, f"its worker process died ({exc})"
                    except Exception as exc:  # any error of one run: report it, go on with the others
                        error = f"{type(exc).__name__}: {exc}"
                    if error is not None:
                        summary = attempts.failed(i, error)
                        if summary is None:
                            queue.append(i)
                        else:
                            results[i] = summary
    progress.close(len(results))
    return [results[i] for i in range(len(jobs))]


def _with_threads(job: RunJob, threads: int) -> RunJob:
    if job.config.get("num_threads") is not None:
        return job
    return replace(job, config={**job.config, "num_threads": threads})
