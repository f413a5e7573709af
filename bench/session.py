"""Session overhead: TrainingSession vs a plain PyTorch loop on the same model, data and steps.

Run: .venv/bin/python bench/session.py [--steps 3000] [--device cuda] [--threads N]
Default net: 8 tanh blocks x 64 on spirals, batch 128, SGD. Goals: <= 1.05x without Hessian
reports; <= 1.25x at the default (adaptive) report cadence while spectra refresh >= 2 per second.
"""

from __future__ import annotations

import argparse
import time

import torch

from bpviz.config import RunConfig
from bpviz.models import network_loss
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
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
