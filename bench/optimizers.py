"""Step-time benchmark: every algorithm's step relative to a plain torch.optim.SGD step, in one run.

Run: .venv/bin/python bench/optimizers.py [--device cuda] [--threads N]
Same model (8 tanh blocks x 64, input 40, 10 classes; BN for SA-SGD's BN row), same batch of 128.
Goals: ProxBP and SIBP's gauss_newton solver <= 3x an SGD step; SA-SGD <= 1.2x. SIBP's default
(the authors' FR-CG + Armijo solver) has no goal: it is measured, one host read per Armijo trial.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from bpviz.config import RunConfig
from bpviz.device import resolve_device
from bpviz.models import build_model, network_loss
from bpviz.optim import make_algorithm


def _time(fn, n: int) -> float:
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(n):
        fn()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return (time.perf_counter() - start) / n


def interleaved(reference, candidate, rounds: int = 15, n: int = 30) -> tuple[float, float, float]:
    """Median per-step times of both and the median of the per-round ratios: alternating short
    rounds cancels the drift of a shared machine that back-to-back timings would pick up."""
    _time(reference, 10)
    _time(candidate, 10)
    ref, cand = [], []
    for _ in range(rounds):
        ref.append(_time(reference, n))
        cand.append(_time(candidate, n))
    ratios = sorted(c / r for c, r in zip(cand, ref))
    return statistics.median(ref), statistics.median(cand), ratios[len(ratios) // 2]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--width", type=int, default=64)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, device {device}, width {args.width}")
    g = torch.Generator().manual_seed(0)
    x = torch.randn(128, 40, generator=g).to(device)
    y = torch.randint(0, 10, (128,), generator=g).to(device)
    print(f"{'algorithm':<22} {'ms/step':>9} {'vs plain SGD':>13}")
    for bn in (False, True):
        base = RunConfig(depth=8, width=args.width, activation="tanh", batch_norm=bn, lr=1e-3)
        model = build_model(base, (40,), 10).to(device)
        opt = torch.optim.SGD(model.parameters(), lr=1e-3)

        def plain() -> None:
            loss = network_loss(model(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()

        runs = [("sgd", {}), ("adam", {})]
        if bn:  # without BN the default variant amends nothing; "all" amends every tensor either way
            runs += [("sa_sgd", {"amend": "bn_weights"}), ("sa_sgd", {"amend": "all"}), ("sa_sgd", {"amend": "head"})]
        else:
            runs += [("sa_sgd", {"amend": "all"})]
            runs += [("proxbp", {}), ("sibp", {"solver": "authors"}), ("sibp", {"solver": "gauss_newton"})]
        for name, options in runs:
            cfg = base.replace(optimizer=name, optimizer_options=options)
            algo = make_algorithm(cfg, build_model(base, (40,), 10).to(device))
            t_sgd, t, ratio = interleaved(plain, lambda: algo.step(x, y))
            label = name + "".join(f" {v}" for v in options.values()) + (" (BN)" if bn else "")
            print(f"{label:<22} {t * 1e3:>9.3f} {ratio:>13.2f}   (plain SGD {t_sgd * 1e3:.3f} ms)")


if __name__ == "__main__":
    main()
