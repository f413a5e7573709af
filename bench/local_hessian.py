"""Local-Hessian benchmark: structured exact spectra vs the dense autograd reference vs block Lanczos.

Run: .venv/bin/python bench/local_hessian.py [--device cuda] [--threads N]
Prints, for the default net (8 tanh blocks x 64, batch 128) and one 4x wider, the times of one run
and their ratios; then the live report on BN nets at the dashboard's sizes (exact BN input spectra vs
the Krylov bounds) and ARPACK's top-10 accuracy and time. The dense reference builds the full Jacobian
with autograd; where it would not fit
in memory it is skipped and the table says why.
"""

from __future__ import annotations

import argparse
import time

import torch

from bpviz import hessian_report, local_hessian
from bpviz.config import RunConfig
from bpviz.device import resolve_device
from bpviz.hessian_report import local_hessian_report
from bpviz.local_hessian import dense_reference_spectrum, local_hessian_spectrum
from bpviz.models import build_model

DENSE_MAX_ELEMENTS = 6e7  # Jacobian entries (float64: ~0.5 GB) the dense reference may build


def timed(fn, repeat: int = 1) -> float:
    """Best wall time of ``repeat`` calls, synchronising CUDA so GPU work is counted."""
    best = float("inf")
    for _ in range(repeat):
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - start)
    return best


def bench_net(width: int, batch: int, device: torch.device, dense_batch: int) -> None:
    cfg = RunConfig(depth=8, width=width, activation="tanh", init="xavier", device=str(device))
    model = build_model(cfg, (width,), 10).to(device)
    x = torch.randn(batch, width, device=device, generator=None)
    blocks = range(len(model.blocks))
    print(f"\n## net: 8 tanh blocks x {width}, batch {batch}, {device}")
    local_hessian_spectrum(model, x, 0, "weight", "lanczos", k=5)  # warm up torch.func once
    exact = {
        wrt: timed(lambda: [local_hessian_spectrum(model, x, b, wrt) for b in blocks]) for wrt in ("weight", "input")
    }
    lanczos = {
        wrt: timed(lambda: [local_hessian_spectrum(model, x, b, wrt, "lanczos", k=5) for b in blocks])
        for wrt in ("weight", "input")
    }
    print(f"{'all 8 blocks':<34} {'weight':>10} {'input':>10}")
    print(f"{'exact structured (s)':<34} {exact['weight']:>10.4f} {exact['input']:>10.4f}")
    print(f"{'lanczos top-5 (s)':<34} {lanczos['weight']:>10.4f} {lanczos['input']:>10.4f}")
    print(
        f"{'lanczos / exact':<34} {lanczos['weight'] / exact['weight']:>10.2f}"
        f" {lanczos['input'] / exact['input']:>10.2f}"
    )

    # dense reference on one block (block 1), same batch for weight; input on a smaller batch
    for wrt, n in (("weight", batch), ("input", dense_batch)):
        xs = x[:n]
        out_dim = n * width
        in_dim = width * width if wrt == "weight" else n * width
        if out_dim * in_dim > DENSE_MAX_ELEMENTS:
            print(f"dense {wrt:<6} (block 1, batch {n}): skipped, J would be {out_dim}x{in_dim}")
            continue
        t_dense = timed(lambda: dense_reference_spectrum(model, xs, 1, wrt))
        t_struct = timed(lambda: local_hessian_spectrum(model, xs, 1, wrt), repeat=3)
        print(
            f"dense {wrt:<6} (block 1, batch {n}): dense {t_dense:.3f} s, structured {t_struct * 1e3:.2f} ms,"
            f" structured is {t_dense / t_struct:.0f}x faster"
        )

    for max_samples in (32, 64, None):
        local_hessian_report(model, x, max_samples=max_samples)
        t = timed(lambda: local_hessian_report(model, x, max_samples=max_samples), repeat=5)
        used = batch if max_samples is None else min(max_samples, batch)
        print(f"full local_hessian_report (8 blocks x 2 wrt), {used:>3} samples: {t * 1e3:8.1f} ms")


def bench_bn_report(device: torch.device) -> None:
    """The live report on BN nets at the dashboard's default sizes (width 32, the 32-sample probe the
    session picks for them): exact BN input spectra vs the Krylov bounds it used to fall back to."""
    print(f"\n## local_hessian_report on BN tanh MLPs of width 32, 32 probe samples, {device}")
    print(f"{'blocks':<8} {'exact (ms)':>11} {'bounds (ms)':>12} {'exact / bounds':>15} {'no-BN exact (ms)':>17}")
    for depth in (4, 16):  # the default depth with BN on, and the deep-tanh-bn preset
        cfg = RunConfig(depth=depth, width=32, activation="tanh", batch_norm=True, device=str(device))
        model = build_model(cfg, (32,), 10).to(device)
        plain = build_model(cfg.replace(batch_norm=False), (32,), 10).to(device)
        x = torch.randn(32, 32, device=device, generator=None)
        local_hessian_report(model, x)
        exact = timed(lambda: local_hessian_report(model, x), repeat=3)
        saved, hessian_report.REPORT_DENSE_MAX = hessian_report.REPORT_DENSE_MAX, 0  # force the fallback
        try:
            bounds = timed(lambda: local_hessian_report(model, x), repeat=3)
            assert all(s.method == "lanczos" for s in local_hessian_report(model, x).stats if s.wrt == "input")
        finally:
            hessian_report.REPORT_DENSE_MAX = saved
        no_bn = timed(lambda: local_hessian_report(plain, x), repeat=3)
        print(f"{depth:<8} {exact * 1e3:>11.0f} {bounds * 1e3:>12.0f} {exact / bounds:>15.2f} {no_bn * 1e3:>17.0f}")


def bench_top_eigen(device: torch.device) -> None:
    """k = 10 largest eigenvalues by ARPACK (method='lanczos') against the exact spectrum."""
    print(f"\n## top-10 eigenvalues (ARPACK + deflation check) vs exact, tanh block 1, batch 128, {device}")
    print(f"{'width':<6} {'wrt':<7} {'time (s)':>9} {'matvecs':>8} {'max |err| / lambda_max':>23}")
    for width in (64, 256):
        cfg = RunConfig(depth=3, width=width, activation="tanh", init="xavier", dtype="float64", device=str(device))
        model = build_model(cfg, (width,), 10).to(device)
        x = torch.randn(128, width, dtype=torch.float64, device=device)
        for wrt in ("weight", "input"):
            exact = local_hessian_spectrum(model, x, 1, wrt).cpu().numpy()
            start = time.perf_counter()
            top = local_hessian.local_hessian_top_eigen(model, x, 1, wrt, k=10)
            seconds = time.perf_counter() - start
            err = abs(top.values - exact[-10:]).max() / exact[-1]
            print(f"{width:<6} {wrt:<7} {seconds:>9.3f} {top.matvecs:>8} {err:>23.1e}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, device {device}")
    bench_net(64, 128, device, dense_batch=32)
    bench_net(256, 128, device, dense_batch=8)
    bench_bn_report(device)
    bench_top_eigen(device)


if __name__ == "__main__":
    main()
