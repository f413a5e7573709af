"""The same runs on a Ray cluster (``--ray auto`` or ``--ray HOST:PORT``; Ray is the optional extra
``bpviz[cluster]``): one task per run, one GPU per task where the cluster has GPUs, else one CPU.

The runs are spread over the cluster's machines (``SPREAD``). A run that raised, or whose worker or
machine died, is reported and submitted again with ``resume`` (from its last checkpoint when the
folder is on a file system the workers share, else from the start), up to ``retries`` times, then
listed as failed: the retries are ours, not Ray's (``max_retries=0``), so a dead worker is reported
as a failed run is. Each task returns its records with its summary, so the results are gathered on
the driver even when the workers' disks are their own.
"""

from __future__ import annotations

import socket
from collections.abc import Callable, Sequence
from dataclasses import replace

from ..config import ConfigError
from .executor import Attempts, Progress
from .runner import RunJob, run_job

CONNECT_TIMEOUT = 5.0


def check_address(address: str) -> None:
    """Fail at once, naming the address, when a HOST:PORT does not answer (``auto`` is Ray's to find)."""
    if address == "auto":
        return
    host, _, port = address.rpartition(":")
    try:
        with socket.create_connection((host, int(port)), timeout=CONNECT_TIMEOUT):
            pass
    except (OSError, ValueError) as exc:
        raise ConfigError(f"ray: cannot reach a Ray cluster at {address!r} ({exc}); give HOST:PORT or 'auto'") from None


def connect(address: str):
    try:
        import ray
    except ImportError:
        raise ConfigError("ray: Ray is not installed; pip install 'bpviz[cluster]'") from None
    check_address(address)
    try:
        ray.init(address=address, ignore_reinit_error=True, log_to_driver=False)
    except (ConnectionError, RuntimeError) as exc:
        raise ConfigError(f"ray: cannot connect to a Ray cluster at {address!r}: {exc}") from None
    return ray


def run_ray(
    jobs: Sequence[RunJob],
    total_steps: int,
    address: str,
    retries: int = 1,
    quiet: bool = False,
    target: Callable[[RunJob], dict] = run_job,
    desc: str = "reproduce",
) -> list[dict]:
    ray = connect(address)
    gpus = 1 if ray.cluster_resources().get("GPU", 0) >= 1 else 0
    task = ray.remote(num_cpus=1, num_gpus=gpus, max_retries=0, scheduling_strategy="SPREAD")(target)
    # one compute thread per task: Ray gives each task one CPU
    jobs = [replace(job, config={**job.config, "num_threads": job.config.get("num_threads") or 1}) for job in jobs]
    progress = Progress(jobs, total_steps, quiet, desc)
    attempts = Attempts(jobs, retries, quiet, where=" on Ray", desc=desc)
    pending = {task.remote(attempts.start(i)): i for i in range(len(jobs))}
    results: dict[int, dict] = {}
    while pending:
        done, _ = ray.wait(list(pending), num_returns=1, timeout=0.5)
        progress.update(len(results))
        for ref in done:
            i = pending.pop(ref)
            try:
                results[i] = ray.get(ref)
            except Exception as exc:  # the run raised, or its worker or machine died
                error = f"{type(exc).__name__}: {str(exc).strip().splitlines()[-1] if str(exc).strip() else ''}"
                summary = attempts.failed(i, error)
                if summary is None:
                    pending[task.remote(attempts.start(i))] = i
                else:
                    results[i] = summary
    progress.close(len(results))
    return [results[i] for i in range(len(jobs))]
