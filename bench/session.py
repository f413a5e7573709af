"""Session overhead: TrainingSession vs a plain PyTorch loop on the same model, data and steps.

Run: .venv/bin/python bench/session.py [--steps 3000] [--device cuda] [--threads N] [--presets [NAME ...]]
Default net: 8 tanh blocks x 64 on spirals, batch 128, SGD. Goals: <= 1.05x without Hessian
reports; <= 1.25x at the default (adaptive) report cadence while spectra refresh >= 2 per second.

--presets [NAME ...]: instead, the named presets of the dashboard's menu (none named: all of
``bpviz.presets.PRESETS``) as the app runs them, a TrainingSession with the default report cadence,
for --preset-steps steps: steps/s and spectrum refreshes/s. On CUDA the run is watched with
``torch.cuda.set_sync_debug_mode("warn")``: each line of code that made the host wait on the device is
listed with how often it did (where the loop reads a number: recorded scalars, divergence checks,
reports).
"""

from __future__ import annotations

import argparse
import collections
import time
import warnings

import torch

from bpviz.config import RunConfig
from bpviz.models import network_loss
from bpviz.presets import PRESETS
from bpviz.session import TrainingSession
from bpviz.train import Trainer


def plain_loop(cfg: RunConfig) -> float:
    """The loop a user would write: same Trainer data and model, torch.optim.SGD, no recording."""
    trainer = Trainer(cfg)
    model, x_all, y_all = trainer.model, trainer.x_train, trainer.y_train
    opt = torch.optim.SGD(model.parameters(), lr=cfg.lr)
    gen = torch.Generator().manual_seed(0)
    start = time.perf_counter()
    for _ in range(cfg.steps):
        idx = torch.randint(0, x_all.shape[0], (cfg.batch_size,), generator=gen).to(trainer.device)
        loss = network_loss(model(x_all[idx]), y_all[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    if trainer.device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def session_run(cfg: RunConfig) -> tuple[float, int]:
    session = TrainingSession(cfg)
    reports = []
    session.subscribe(lambda e: reports.append(1) if "report" in e else None)
    start = time.perf_counter()
    session.start()
    session.wait()
    elapsed = time.perf_counter() - start
    return elapsed, session.reports_total


def presets_run(device: str, steps: int, names: list[str]) -> None:
    """Each preset as the dashboard runs it: steps/s, refreshes/s and, on CUDA, where the host waited."""
    print(f"{'preset':<22} {'device':>6} {'steps':>6} {'s':>7} {'steps/s':>8} {'reports/s':>9}  host waits (CUDA)")
    for name in names:
        cfg = PRESETS[name].replace(steps=steps, device=device)
        session = TrainingSession(cfg)
        on_cuda = session.trainer.device.type == "cuda"
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            if on_cuda:
                torch.cuda.set_sync_debug_mode("warn")
            start = time.perf_counter()
            session.start()
            session.wait()
            elapsed = time.perf_counter() - start
            if on_cuda:
                torch.cuda.set_sync_debug_mode("default")
        waits = collections.Counter(
            f"{w.filename.rsplit('/', 2)[-2]}/{w.filename.rsplit('/', 1)[-1]}:{w.lineno}"
            for w in caught
            if "synchroniz" in str(w.message)
        )
        sites = ", ".join(f"{site} x{n}" for site, n in waits.most_common(6)) if on_cuda else "-"
        print(
            f"{name:<22} {session.trainer.device.type:>6} {session.step:>6} {elapsed:>7.2f}"
            f" {session.step / elapsed:>8.0f} {session.reports_total / elapsed:>9.1f}  {sites}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument(
        "--presets", nargs="*", default=None, metavar="NAME", help="the dashboard's presets instead (none named: all)"
    )
    parser.add_argument("--preset-steps", type=int, default=1000)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.presets is not None:
        presets_run(args.device, args.preset_steps, args.presets or list(PRESETS))
        return
    base = RunConfig(
        dataset="spirals",
        depth=8,
        width=64,
        activation="tanh",
        batch_size=128,
        lr=0.05,
        steps=args.steps,
        device=args.device,
    )
    print(
        f"torch {torch.__version__}, threads {torch.get_num_threads()}, device {Trainer(base).device},"
        f" {args.steps} steps"
    )
    plain_loop(base.replace(steps=200))  # warm-up
    t_plain = plain_loop(base)
    t_quiet, _ = session_run(base.replace(hessian_every=10**9))
    t_live, n_reports = session_run(base)
    print(f"{'':<38} {'s':>7} {'steps/s':>9} {'x plain':>8}")
    print(f"{'plain PyTorch loop':<38} {t_plain:>7.2f} {args.steps / t_plain:>9.0f} {1.0:>8.2f}")
    print(f"{'session, no Hessian reports':<38} {t_quiet:>7.2f} {args.steps / t_quiet:>9.0f} {t_quiet / t_plain:>8.2f}")
    print(
        f"{'session, adaptive reports (default)':<38} {t_live:>7.2f} {args.steps / t_live:>9.0f}"
        f" {t_live / t_plain:>8.2f}"
    )
    print(f"local-Hessian reports: {n_reports} in {t_live:.1f} s = {n_reports / t_live:.1f} refreshes/s")


if __name__ == "__main__":
    main()
