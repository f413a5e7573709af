"""The live training session: controls from other threads, events, bounded history, divergence."""

import gc
import os
import signal
import subprocess
import sys
import threading
import time
import tracemalloc

import pytest
from waiting import wait_for

from bpviz.config import RunConfig
from bpviz.runs import load_run
from bpviz.session import SessionError, State, TrainingSession

SMALL = dict(dataset="xor", n_train=256, n_test=64, depth=2, width=8, batch_size=32)


def trainer_threads():
    return [t for t in threading.enumerate() if t.name == "bpviz-trainer" and t.is_alive()]


def test_controls_from_another_thread_drive_the_state_machine():
    session = TrainingSession(RunConfig(**SMALL, steps=10**6, lr=0.05))
    errors = []

    def driver():
        try:
            session.start()
            assert wait_for(lambda: session.step > 50)
            session.set_lr(0.01)
            session.pause()  # takes effect between steps: the step in flight completes
            time.sleep(0.1)
            paused_at = session.step
            time.sleep(0.3)
            assert session.step == paused_at and session.state is State.PAUSED
            session.resume()
            assert wait_for(lambda: session.step > paused_at + 20)
            assert session.trainer.algorithm.lr == 0.01
            session.stop()
        except Exception as exc:  # surface the driver's failure in the test thread
            errors.append(exc)

    t = threading.Thread(target=driver)
    t.start()
    t.join(30)
    assert not errors, errors
    assert session.state is State.FINISHED and session.message == "stopped"
    assert not trainer_threads()


def test_every_step_size_change_is_recorded_with_its_step(tmp_path):
    session = TrainingSession(RunConfig(**SMALL, steps=10**6, lr=0.05, hessian_every=10**5), runs_dir=tmp_path)
    session.start()
    assert wait_for(lambda: session.step > 30)
    session.set_lr(0.5)
    assert wait_for(lambda: session.trainer.algorithm.lr == 0.5)
    changed_at = session.history.snapshot()["lr"]["step"][-1]
    session.set_hessian_every(50)
    assert wait_for(lambda: session.step > changed_at + 30)
    session.set_lr(0.002)
    assert wait_for(lambda: session.trainer.algorithm.lr == 0.002)
    session.stop()
    lr = session.history.snapshot()["lr"]
    assert lr["value"] == [0.05, 0.5, 0.002] and lr["step"][0] == 0 and 30 < lr["step"][1] < lr["step"][2]
    run = load_run(session.writer.path)
    assert run.config.lr == 0.05  # how the run started; the record says what changed
    assert run.step_sizes == list(zip(lr["step"], lr["value"]))
    assert run.describe_step_sizes() == "lr 0.05→0.5→0.002"
    assert [r["hessian_every"] for r in run.records if "hessian_every" in r] == [50]


@pytest.mark.parametrize("action", ["pause", "resume", "stop"])
def test_invalid_transitions_name_the_state(action):
    session = TrainingSession(RunConfig(**SMALL, steps=10))
    with pytest.raises(SessionError, match=f"cannot {action} a session that is idle"):
        getattr(session, action)()
    session.start()
    session.wait(10)
    with pytest.raises(SessionError, match="finished .*reset first"):
        session.start()


def test_finishes_after_cfg_steps_with_a_final_event():
    session = TrainingSession(RunConfig(**SMALL, steps=200), loss_every=10, eval_every=50)
    sub = session.subscribe()
    session.start()
    assert session.wait(20) and session.state is State.FINISHED and session.step == 200
    events = []
    while (e := sub.get(timeout=0.5)) is not None:
        events.append(e)
    assert events[-1]["state"] == "finished" and events[-1]["step"] == 200
    snap = session.snapshot()
    assert snap["history"]["batch_loss"]["step"][-1] == 200
    assert snap["history"]["test_accuracy"]["step"] == [50, 100, 150, 200]
    assert "cond/input/0" in snap["history"] and snap["device"] == "cpu"


def test_train_and_test_accuracy_are_recorded_at_each_evaluation():
    """Checked against the model's own predictions on the same samples, BN in eval mode."""
    import torch

    cfg = RunConfig(dataset="spirals", n_train=300, n_test=100, depth=3, width=16, batch_norm=True, steps=120)
    session = TrainingSession(cfg, eval_every=60, train_eval_samples=200)
    session.start()
    assert session.wait(30) and session.state is State.FINISHED
    hist = session.snapshot()["history"]
    assert hist["train_accuracy"]["step"] == hist["test_accuracy"]["step"] == [60, 120]
    t = session.trainer
    t.model.eval()
    with torch.no_grad():
        for split, x, y in (("train", t.x_train[:200], t.y_train[:200]), ("test", t.x_test, t.y_test)):
            expected = (t.model(x).argmax(1) == y).double().mean().item()
            assert hist[f"{split}_accuracy"]["value"][-1] == pytest.approx(expected, abs=1e-12)
    # a regression task has no accuracy: nothing is recorded under that name
    reg = TrainingSession(
        RunConfig(dataset="teacher", n_train=128, n_test=32, depth=2, width=8, steps=20), eval_every=10
    )
    reg.start()
    assert reg.wait(30) and "train_accuracy" not in reg.snapshot()["history"]


def test_events_are_rate_limited_and_carry_points_and_reports():
    session = TrainingSession(RunConfig(**SMALL, steps=10**6), max_rate=10)
    seen = []
    session.subscribe(seen.append)
    session.start()
    time.sleep(2.0)
    session.stop()
    running = [e for e in seen if e["state"] == "running"]
    assert 5 <= len(running) <= 2.0 * 10 + 3  # at most max_rate a second (+ state changes)
    assert any(e.get("points", {}).get("batch_loss") for e in running)
    assert any("report" in e for e in seen)
    assert max(e["steps_per_s"] for e in running) > 0


def test_a_run_whose_reports_are_slow_still_gets_a_front_loaded_kappa_curve(monkeypatch):
    """With the adaptive cadence a report that costs as much as the whole run would come once; the
    front-loaded minimum gives MIN_REPORTS points, more of them early (where the spectra move)."""
    from bpviz import loop
    from bpviz import session as session_module

    real = session_module.local_hessian_report

    def slow_report(*args, **kwargs):
        time.sleep(0.3)
        return real(*args, **kwargs)

    monkeypatch.setattr(session_module, "local_hessian_report", slow_report)
    session = TrainingSession(RunConfig(**SMALL, steps=1000))
    session.start()
    assert session.wait(60)
    steps = session.history.snapshot()["cond/input/1"]["step"]
    expected = sorted({0} | loop.front_loaded_steps(1000))
    assert set(expected) <= set(steps) and len(expected) == loop.MIN_REPORTS + 1
    assert expected[:5] == [0, 20, 35, 61, 107]  # front-loaded: half of them in the first 11 % of the run


def test_the_shown_rate_is_steady_when_some_steps_are_slow(monkeypatch):
    """Every 100th step stalls 0.4 s (as a local-Hessian report of a deep net does): one publish period would read
    anywhere from ~0 to many times the true rate; the shown rate is the rate over the last seconds."""
    from bpviz.train import Trainer

    real_step = Trainer.step

    def step(self):
        time.sleep(0.4 if self.step_count % 100 == 99 else 0.001)
        return real_step(self)

    monkeypatch.setattr(Trainer, "step", step)
    session = TrainingSession(RunConfig(**SMALL, steps=10**6, hessian_every=10**5), max_rate=10)
    events = []
    session.subscribe(lambda e: events.append((time.monotonic(), e["step"], e["steps_per_s"])))
    session.start()
    time.sleep(5.0)
    session.stop()
    late = [e for e in events if e[0] > events[0][0] + 2.5 and e[1] > 0]
    (t0, s0, _), (t1, s1, _) = late[0], late[-1]
    true_rate = (s1 - s0) / (t1 - t0)
    shown = [r for _, _, r in late]
    assert len(shown) >= 5 and 0.6 * true_rate < min(shown) <= max(shown) < 1.4 * true_rate, (true_rate, shown)


def test_a_subscriber_that_never_returns_does_not_hold_training_up():
    """A subscriber stuck in its callback (a slow plot, a sleeping page) costs training nothing:
    the run finishes while it is stuck, and afterwards it gets one merged event per delivery,
    ending with the final state. (Structural, so it does not depend on the machine's speed.)"""
    session = TrainingSession(RunConfig(**SMALL, steps=3000, hessian_every=10**6))
    release = threading.Event()
    calls = []

    def stuck(event):
        calls.append(event)
        release.wait(60)

    session.subscribe(stuck)
    session.start()
    try:
        assert session.wait(60), "training must finish while the subscriber is stuck"
        assert session.step == 3000 and len(calls) == 1
    finally:
        release.set()
    assert wait_for(lambda: calls[-1]["state"] == "finished")
    assert len(calls) <= 3  # events published meanwhile were merged, not queued


def test_diverging_run_is_marked_keeps_its_history_and_resets():
    session = TrainingSession(
        RunConfig(**{**SMALL, "depth": 3}, steps=10**6, lr=1e3, activation="relu", init="kaiming")
    )
    sub = session.subscribe()
    session.start()
    assert session.wait(20), "the worker must end by itself"
    assert session.state is State.DIVERGED and session.diverged_at is not None
    assert "NaN/Inf" in session.message and f"step {session.diverged_at}" in session.message
    events = []
    while (e := sub.get(timeout=0.3)) is not None:
        events.append(e)
    assert events[-1]["state"] == "diverged" and events[-1]["diverged_at"] == session.diverged_at
    history = session.snapshot()["history"]["batch_loss"]
    assert history["step"][-1] == session.diverged_at and len(history["step"]) >= 1
    session.reset(session.cfg.replace(lr=0.01))
    assert session.state is State.IDLE and session.step == 0
    session.start()
    assert wait_for(lambda: session.step > 100)
    session.stop()


def test_an_exception_in_the_worker_is_kept_as_state_failed(monkeypatch):
    session = TrainingSession(RunConfig(**SMALL, steps=10**6))
    calls = {"n": 0}
    original = session.trainer.step

    def flaky():
        calls["n"] += 1
        if calls["n"] == 30:
            raise RuntimeError("boom in step 30")
        return original()

    monkeypatch.setattr(session.trainer, "step", flaky)
    session.start()
    assert session.wait(20)
    assert session.state is State.FAILED and "boom in step 30" in session.message
    assert not trainer_threads()


def test_hundred_start_stop_reset_cycles_leave_no_threads_and_flat_memory():
    session = TrainingSession(RunConfig(**SMALL, steps=10**6, hessian_every=10**6))
    gc.collect()
    tracemalloc.start()
    for i in range(100):
        session.start()
        session.stop()
        session.reset()
        if i == 9:
            gc.collect()
            after_10 = tracemalloc.get_traced_memory()[0]
    gc.collect()
    after_100 = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    assert not trainer_threads()
    assert after_100 - after_10 < 2_000_000  # no per-cycle leak


def test_history_stays_bounded_over_200k_cheap_steps():
    cfg = RunConfig(
        dataset="xor", n_train=64, n_test=16, depth=1, width=2, batch_size=1, steps=200_000, hessian_every=10**9
    )
    session = TrainingSession(cfg, loss_every=50, eval_every=10**9, history_points=100)
    session.start()
    assert session.wait(300) and session.step == 200_000
    series = session.history.series["batch_loss"]
    assert series.count == 4000 and len(series.recent) <= 100 and len(series.buckets) <= 50
    assert len(session.snapshot()["history"]["batch_loss"]["step"]) <= 151


def test_runs_are_written_and_survive_a_killed_process(tmp_path):
    script = (
        "import torch\n"
        "torch.set_num_threads(1)\n"
        "from bpviz.config import RunConfig\n"
        "from bpviz.session import TrainingSession\n"
        f"s = TrainingSession(RunConfig(dataset='xor', depth=2, width=8, steps=10**7), runs_dir={str(tmp_path)!r})\n"
        "s.start()\n"
        "print('started', flush=True)\n"
        "s.wait()\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "started"
    time.sleep(3.0)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(10)
    (run_dir,) = list(tmp_path.iterdir())
    run = load_run(run_dir)
    losses = [r for r in run.records if "batch_loss" in r]
    assert len(losses) >= 5 and run.config.steps == 10**7
    steps = [r["step"] for r in losses]
    assert steps == sorted(steps)
    assert run.status["state"] == "running"  # it never got to close: killed


def test_a_recorded_step_is_read_from_the_device_once(monkeypatch):
    """The loop reads a checked step's numbers (loss, scalars, gradient norms) in one sync and the
    session records those: the batch loss is converted to a float once per recorded step, not twice."""
    import torch

    from bpviz.train import Trainer

    reads = []

    class Loss(torch.Tensor):
        def __float__(self):
            reads.append(1)
            return super().__float__()

    step = Trainer.step

    def counted(self):
        result = step(self)
        result.loss = result.loss.as_subclass(Loss)
        return result

    monkeypatch.setattr(Trainer, "step", counted)
    session = TrainingSession(RunConfig(**SMALL, steps=100), loss_every=10, eval_every=100)
    session.start()
    assert session.wait(20) and session.state is State.FINISHED
    recorded = session.snapshot()["history"]["batch_loss"]
    assert recorded["step"] == list(range(10, 101, 10)) and len(reads) == 10
