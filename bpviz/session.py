"""Live training: one worker thread trains while any thread steers it and subscribers watch.

The worker owns the model; controls (``start``, ``pause``, ``resume``, ``stop``, ``reset``, ``set_lr``,
``set_hessian_every``) only set flags or pending values that the worker picks up between steps, so
they are safe from any thread and never wait for a step. Subscribers get coalesced events at most
``max_rate`` times a second through a one-slot mailbox each: a slow subscriber receives merged
updates, never blocks training and never grows a queue. State changes are published at once.

States: idle -> running <-> paused -> finished; running -> diverged (NaN/Inf) or failed (an
exception, message kept). ``reset`` brings any state back to idle with a fresh model.
"""

from __future__ import annotations

import copy
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from .boundary import live_boundary
from .checkpoint import load_checkpoint, save_checkpoint
from .config import RunConfig
from .events import Subscribers, Subscription
from .hessian_report import local_hessian_report, probe_size
from .history import History
from .loop import REPORT_SHARE, Hook, ReportSchedule, StepRate, train_loop
from .loop import every as loop_every
from .metrics import step_metrics
from .optim.base import check_lr
from .runs import RunWriter
from .session_state import ENDED, SessionError, State
from .train import Trainer


class TrainingSession:
    """Trains ``cfg`` on a worker thread; see the module docstring."""

    def __init__(
        self,
        cfg: RunConfig,
        runs_dir: str | Path | None = None,
        max_rate: float = 10.0,
        loss_every: int = 10,
        eval_every: int = 100,
        hessian_share: float = REPORT_SHARE,
        hessian_samples: int | None = None,
        history_points: int = 1000,
        train_eval_samples: int = 1024,
        checkpoint: str | Path | None = None,
    ):
        self.runs_dir = runs_dir
        self.max_rate = max_rate
        self.loss_every, self.eval_every = loss_every, eval_every
        self.hessian_share, self.hessian_samples = hessian_share, hessian_samples
        self.history_points = history_points
        self.train_eval_samples = train_eval_samples
        self._lock = threading.RLock()
        self._subscribers = Subscribers()
        self._worker: threading.Thread | None = None
        self._stop = threading.Event()
        self._running = threading.Event()  # cleared while paused
        self._parked = threading.Event()  # set while the paused worker waits (touches no tensor)
        self._checkpoint = checkpoint
        self._setup(cfg)

    # --- state ------------------------------------------------------------------------------
    def _setup(self, cfg: RunConfig) -> None:
        self.cfg = cfg
        # from a checkpoint: the run goes on from its step, with its model, optimizer and RNG state
        self.trainer = load_checkpoint(self._checkpoint, cfg) if self._checkpoint else Trainer(cfg)
        self.history = History(recent=self.history_points, buckets=self.history_points // 2)
        self.state = State.IDLE
        self.message = ""
        self.diverged_at: int | None = None
        self.report: dict | None = None
        self.writer: RunWriter | None = None
        self._pending_lr: float | None = None
        self._hessian_every: int | str = cfg.hessian_every
        self._every_changed = False
        self._new_points: dict[str, list] = {}
        self._steps_per_s = 0.0
        self._reports = 0  # reports not yet published
        self.reports_total = 0  # reports made in this run (benchmarks read it)
        self.boundary: dict | None = None  # the latest decision boundary (2-D classification only)
        self._boundary_new = False  # made since the last event
        self._update_boundary()  # the starting network's, shown while idle (ms: see _update_boundary)

    @property
    def probe_samples(self) -> int:
        """Training samples the local-Hessian reports use (BN statistics are over these)."""
        if self.hessian_samples is not None:
            return self.hessian_samples
        return probe_size(self.trainer.model, self.trainer.x_train, self.cfg.batch_size)

    @property
    def step(self) -> int:
        return self.trainer.step_count

    @property
    def lr(self) -> float:
        return self._pending_lr if self._pending_lr is not None else self.trainer.algorithm.lr

    @property
    def device(self) -> str:
        return str(self.trainer.device)

    def _require(self, action: str, *allowed: State) -> None:
        if self.state not in allowed:
            hint = " (reset first)" if self.state in ENDED else ""
            raise SessionError(
                f"cannot {action} a session that is {self.state.value}{hint}; "
                f"{action} needs state {' or '.join(s.value for s in allowed)}"
            )

    # --- controls (any thread) ----------------------------------------------------------------
    def start(self) -> None:
        with self._lock:
            self._require("start", State.IDLE)
            if self.runs_dir is not None:
                self.writer = RunWriter(self.runs_dir, self.cfg)
                if self._checkpoint is not None and self.step > 0:
                    self.writer.append({"step": self.step, "resumed_from": str(self._checkpoint)})
            self._stop.clear()
            self._running.set()
            self._set_state(State.RUNNING)
            self._worker = threading.Thread(target=self._work, name="bpviz-trainer", daemon=True)
            self._worker.start()

    def pause(self) -> None:
        with self._lock:
            self._require("pause", State.RUNNING)
            self._running.clear()
            self._set_state(State.PAUSED)

    def resume(self) -> None:
        with self._lock:
            self._require("resume", State.PAUSED)
            self._set_state(State.RUNNING)
            self._running.set()

    def stop(self, timeout: float = 10.0, wait: bool = True) -> None:
        """End the run (state finished). With ``wait``, wait for the worker to leave (SessionError
        after ``timeout``); without, return at once: the worker leaves after the step or the
        local-Hessian report it is computing (a report is not interrupted, and a deep BN net's can
        take longer than ``timeout`` on a busy machine: 14 s measured), and the state then says so."""
        with self._lock:
            self._require("stop", State.RUNNING, State.PAUSED)
            self._stop.set()
            self._running.set()
        if wait:
            self._join(timeout)

    def reset(self, cfg: RunConfig | None = None, timeout: float = 10.0) -> None:
        """Stop whatever runs, then a fresh model (from ``cfg`` if given) in state idle."""
        self._stop.set()
        self._running.set()
        self._join(timeout)
        with self._lock:
            self._checkpoint = None
            self._setup(cfg or self.cfg)
            self._publish()

    def save_checkpoint(self, path: str | Path | None = None, timeout: float = 10.0) -> Path:
        """Model, algorithm and RNG state now (``bpviz.checkpoint``), by default as
        ``checkpoint.pt`` in the run's folder; while paused (once the worker has parked) or ended."""
        with self._lock:
            self._require("save a checkpoint of", State.IDLE, State.PAUSED, State.FINISHED)
            paused = self.state is State.PAUSED
        if paused and not self._parked.wait(timeout):
            raise SessionError(f"the training thread did not pause within {timeout} s")
        if path is None:
            if self.writer is None:
                raise SessionError("this session writes no run folder (runs_dir=None): give a path")
            path = self.writer.path / "checkpoint.pt"
        return save_checkpoint(self.trainer, path)

    def set_lr(self, lr: float) -> None:
        """Takes effect at the next step."""
        self._pending_lr = check_lr(lr)

    def set_hessian_every(self, every: int | str) -> None:
        """A fixed report cadence in steps, or ``"auto"`` (``MIN_REPORTS`` front-loaded reports, and
        between them reports whenever they have taken at most ``hessian_share`` of the worker's
        time: ``loop.ReportSchedule``); the run's record gets the change."""
        if every != "auto" and (isinstance(every, bool) or not isinstance(every, int) or every < 1):
            raise ValueError(f"hessian_every: got {every!r}; allowed: 'auto' or an integer >= 1")
        self._hessian_every = every
        self._every_changed = True

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the worker has ended (True) or ``timeout`` passes (False)."""
        worker = self._worker
        if worker is not None:
            worker.join(timeout)
            return not worker.is_alive()
        return True

    def _join(self, timeout: float) -> None:
        worker = self._worker
        if worker is not None and worker is not threading.current_thread():
            worker.join(timeout)
            if worker.is_alive():
                raise SessionError(f"the training thread did not stop within {timeout} s")
        self._worker = None

    # --- subscribers ----------------------------------------------------------------------------
    def subscribe(self, callback: Callable[[dict], Any] | None = None) -> Subscription:
        """Without ``callback``: a Subscription to ``get`` events from. With one: it is called on
        its own thread with each (merged) event, so it can be slow without slowing training."""
        with self._lock:
            return self._subscribers.add(self._event(points=False), callback)

    def snapshot(self) -> dict:
        """Everything a plot needs now: bounded history of every series and the latest state."""
        with self._lock:
            snapshot = {**self._event(points=False), "history": self.history.snapshot()}
            if self.boundary is not None:  # replaced, never changed in place: safe to hand out
                snapshot["boundary"] = self.boundary
            return snapshot

    # --- publishing -----------------------------------------------------------------------------
    def _event(self, points: bool = True) -> dict:
        event = {
            "state": self.state.value,
            "step": self.step,
            "lr": self.lr,
            "device": self.device,
            "steps_per_s": self._steps_per_s,
            "message": self.message,
            "diverged_at": self.diverged_at,
            "hessian_every": self._hessian_every,
            "run": self.writer.path.name if self.writer else None,
            "time": time.time(),
        }
        if points:
            event["points"], self._new_points = self._new_points, {}
            if self.report is not None and self._reports:
                event["report"] = self.report
                self._reports = 0
            if self.boundary is not None and self._boundary_new:
                event["boundary"], self._boundary_new = self.boundary, False
        return event

    def _publish(self) -> None:
        with self._lock:
            self._subscribers.publish(self._event())
        self._last_publish = time.monotonic()

    def _set_state(self, state: State, message: str = "") -> None:
        self.state = state
        if message:
            self.message = message
        if self.writer is not None and state in (State.RUNNING, State.PAUSED):  # as readers of the folder see it
            self.writer.set_status(state.value, step=self.step)  # (finished, failed: the writer's close)
        self._publish()

    def _record(self, values: dict[str, float], step: int | None = None) -> None:
        step = self.step if step is None else step
        with self._lock:
            self.history.record(step, values)
            for name, value in values.items():
                self._new_points.setdefault(name, []).append((step, value))
        if self.writer is not None:
            self.writer.append({"step": step, **values})

    # --- the worker -----------------------------------------------------------------------------
    def _work(self) -> None:
        try:
            self._train()
        except Exception as exc:  # keep the message: never a silent dead thread
            with self._lock:
                self._set_state(State.FAILED, f"{type(exc).__name__}: {exc}")
        finally:
            if self.writer is not None:
                if self.state is State.FINISHED:  # every finished or stopped run can be resumed
                    try:
                        save_checkpoint(self.trainer, self.writer.path / "checkpoint.pt")
                    except OSError as exc:
                        self.message = f"{self.message}; checkpoint not saved: {exc}".lstrip("; ")
                self.writer.close(self.state.value, step=self.step, message=self.message, diverged_at=self.diverged_at)

    def _train(self) -> None:
        """The engine's one loop (``bpviz.loop``) with the session's hooks: record, evaluate,
        report, publish; between steps ``_between_steps`` applies the controls."""
        trainer, cfg = self.trainer, self.cfg
        probe = trainer.x_train[: self.probe_samples]
        self._last_publish = time.monotonic()
        self._record({"lr": trainer.algorithm.lr})  # the step size the run starts with
        self._schedule = schedule = ReportSchedule(cfg.steps, self.hessian_share)
        # the report of the starting network (seconds for deep BN nets) is made after the first loss
        # point is recorded, on a copy taken now, so that a page sees the run move at once
        start, start_step = copy.deepcopy(trainer.model), self.step
        self._rate = StepRate(self.step)

        def report_start(step: int, result) -> None:
            nonlocal start
            schedule.ran(self._hessian(probe, start, start_step))
            start = None

        record_due, evaluate_due = loop_every(self.loss_every, cfg.steps), loop_every(self.eval_every, cfg.steps)
        hooks = [
            Hook(record_due, lambda step, result: self._record_step(result), on_divergence=True),
            Hook(lambda step: not schedule.started and record_due(step), report_start),
            Hook(evaluate_due, lambda step, result: self._evaluate()),
            Hook(lambda step: schedule.due(step, self._hessian_every), lambda s, r: schedule.ran(self._hessian(probe))),
            Hook(
                lambda step: time.monotonic() - self._last_publish >= 1.0 / self.max_rate,
                lambda step, result: self._publish_progress(step),
            ),
        ]
        checks = dict(check=record_due, check_parameters=evaluate_due, before_step=self._between_steps)
        checks["read"] = lambda result: step_metrics(result, trainer.model.blocks)  # read by the loop, recorded here
        end = train_loop(trainer, cfg.steps, hooks, **checks)
        with self._lock:
            if end.status == "diverged":
                self.diverged_at = end.step
                self._set_state(State.DIVERGED, f"diverged at step {end.step}: NaN/Inf in the {end.reason}")
            else:
                self._set_state(State.FINISHED, "stopped" if end.status == "stopped" else "")

    def _between_steps(self) -> bool:
        """Apply the controls: stop (False ends the loop), pause (wait here), a new step size or
        report cadence (recorded at the step it takes effect after)."""
        if self._stop.is_set():
            return False
        if not self._running.is_set():
            paused_at = time.perf_counter()
            self._parked.set()
            while not self._running.is_set() and not self._stop.is_set():
                if self.writer is not None:
                    self.writer.flush()  # a paused run's records reach the disk too
                self._running.wait(0.2)
            self._parked.clear()
            self._schedule.paused(time.perf_counter() - paused_at)
            self._rate = StepRate(self.step)  # a pause is not slow training
            if self._stop.is_set():
                return False
        if self._pending_lr is not None:
            lr, self._pending_lr = self._pending_lr, None
            self.trainer.set_lr(lr)
            self._record({"lr": lr})
        if self._every_changed:
            self._every_changed = False
            if self.writer is not None:
                self.writer.append({"step": self.step, "hessian_every": self._hessian_every})
        return True

    def _publish_progress(self, step: int) -> None:
        self._steps_per_s = self._rate.at(step)
        self._publish()

    def _evaluate(self) -> None:
        """Loss and accuracy on the test split and on a fixed slice of the training split (BN in
        eval mode; ``batch_loss`` is the per-step mini-batch loss): a gap between them is overfitting."""
        values = {f"test_{k}": v for k, v in self.trainer.evaluate("test").items()}
        train = self.trainer.evaluate("train", max_samples=self.train_eval_samples)
        values.update({f"train_{k}": v for k, v in train.items()})
        self._record(values)
        self._update_boundary()

    def _update_boundary(self) -> None:
        """The decision boundary as of now, for 2-D classifiers (ms: ``boundary.live_boundary``)."""
        boundary = live_boundary(self.trainer)
        if boundary is not None:
            with self._lock:
                self.boundary, self._boundary_new = boundary, True

    def _record_step(self, result) -> None:
        """The batch loss, the algorithm's scalars and the gradient norms: the loop read them (one
        device sync, ``step_metrics``) on this step, which it checks whenever one is recorded."""
        self._record(result.numbers)

    def _hessian(self, probe: torch.Tensor, model: torch.nn.Module | None = None, step: int | None = None) -> float:
        """The local-Hessian report of ``model`` (the one training, by default) as of ``step``."""
        start = time.perf_counter()
        step = self.step if step is None else step
        report = local_hessian_report(model or self.trainer.model, probe, max_samples=None)
        summary = report.to_dict()
        summary["step"] = step
        self.report = summary
        self._reports += 1
        self.reports_total += 1
        self._record(report.named_values(), step)  # bounds get their own names: a cond/ number is always exact
        return time.perf_counter() - start
