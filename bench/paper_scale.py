"""VGG13-BN at paper scale: bpviz's training step against a bare PyTorch loop, what the local-Hessian
reports cost per block, and the --tiny reproductions end to end. Ratios are measured in one run.

Run: .venv/bin/python bench/paper_scale.py [--device cuda] [--steps 50] [--batch 128] [--width 64] [--sibp-steps N]
On a CPU use a small net (--width 8 --batch 32 --steps 10): the numbers then say the script works,
not what a GPU does. Prints, on the device given:
- steps/s of a bare loop (an nn.Sequential VGG13-BN written here, torch.optim.SGD with momentum and
  weight decay, random CIFAR-shaped data on the device) and of bpviz's (Trainer: VGG13 from explicit
  blocks, augmentation, step decay), and the ratio (issue 15's goal: >= 0.8 at the default report
  schedule);
- one local-Hessian report of every block on --batch images: each block's κ and method (exact, or
  Lanczos bounds, marked >=) and the seconds of its weight and input spectra, and the whole report's;
- the throughput ratio with a report every ``report_every`` steps on the reproduction's images
  (``REPORT_SAMPLES``) as ``bpviz reproduce lhbp-vgg13-cifar10`` schedules them (every 10 epochs,
  3,906 steps);
- with --sibp-steps N, the steps/s of SGD, ProxBP and SIBP in the ``sibp-*`` recipes (step size 1) on
  random data of MNIST's and CIFAR-10's shapes, and a run's training time at that rate;
- the wall time of each ``bpviz reproduce NAME --tiny``.
"""

from __future__ import annotations

import argparse
import collections
import tempfile
import time
from pathlib import Path

import torch
from torch import nn

from bpviz import hessian_report
from bpviz.data import Dataset
from bpviz.hessian_report import local_hessian_report
from bpviz.reproduce import EXPERIMENTS, reproduce
from bpviz.reproduce.runner import REPORT_SAMPLES
from bpviz.train import Trainer

VGG13 = [1, 1, "M", 2, 2, "M", 4, 4, "M", 8, 8, "M", 8, 8, "M"]


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def bare_vgg13(width: int, classes: int) -> nn.Sequential:
    layers, c_in = [], 3
    for v in VGG13:
        if v == "M":
            layers.append(nn.MaxPool2d(2))
        else:
            layers += [nn.Conv2d(c_in, v * width, 3, padding=1), nn.BatchNorm2d(v * width), nn.ReLU()]
            c_in = v * width
    return nn.Sequential(*layers, nn.Flatten(), nn.Linear(c_in, classes))


def bare_steps_per_s(args, device, x, y) -> float:
    model = bare_vgg13(args.width, 10).to(device)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
    gen = torch.Generator().manual_seed(0)

    def step() -> None:
        idx = torch.randint(0, len(x), (args.batch,), generator=gen).to(device, non_blocking=True)
        loss = nn.functional.cross_entropy(model(x[idx]), y[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return timed(step, args, device)


def timed(step, args, device) -> float:
    for _ in range(3):  # warm-up: cuDNN's algorithm search, allocator
        step()
    sync(device)
    start = time.perf_counter()
    for _ in range(args.steps):
        step()
    sync(device)
    return args.steps / (time.perf_counter() - start)


def bpviz_trainer(args, data: Dataset) -> Trainer:
    cfg = (
        EXPERIMENTS["lhbp-vgg13-cifar10"]
        .runs[0]
        .cfg.replace(
            width=args.width,
            batch_size=args.batch,
            device=args.device,
            n_train=len(data.x_train),
            n_test=len(data.x_test),
        )
    )
    return Trainer(cfg, data)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--width", type=int, default=64)
    ap.add_argument("--report-every", type=int, default=EXPERIMENTS["lhbp-vgg13-cifar10"].report_every)
    ap.add_argument("--no-tiny", action="store_true", help="skip the --tiny reproductions")
    ap.add_argument("--no-report", action="store_true", help="skip the local-Hessian report (slow on a CPU)")
    ap.add_argument("--sibp-steps", type=int, default=0, help="time SGD/ProxBP/SIBP steps of the sibp-* recipes")
    args = ap.parse_args()
    device = torch.device(args.device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    print(f"bench/paper_scale.py on {name}: VGG13-BN width {args.width}, batch {args.batch}, {args.steps} steps")
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2048, 3, 32, 32, generator=g)
    y = torch.randint(0, 10, (2048,), generator=g)
    data = Dataset("cifar10", x, y, x[:512], y[:512], "classification", 10, (3, 32, 32))
    bare = bare_steps_per_s(args, device, x.to(device), y.to(device))
    trainer = bpviz_trainer(args, data)
    ours = timed(trainer.step, args, device)
    print(f"  bare PyTorch loop                  {bare:8.2f} steps/s")
    print(
        f"  bpviz Trainer (augment, schedule)  {ours:8.2f} steps/s   ratio {ours / bare:.2f} (goal >= 0.8 with reports)"
    )
    if not args.no_report:
        report_cost(args, device, trainer, ours, bare)
    if args.sibp_steps:
        sibp_rates(args.sibp_steps, device)
    if not args.no_tiny:
        tiny_runs()


def timed_report(model, probe: torch.Tensor, device: torch.device):
    """One report of every block, with the seconds of each block's weight and input spectra (the
    report's three solvers wrapped and timed, the device synchronised around each)."""
    index = {id(block): i for i, block in enumerate(model.blocks)}
    seconds: dict[tuple[int, str], float] = collections.defaultdict(float)

    def wrap(name: str, where):
        solver = getattr(hessian_report, name)

        def timed_solver(*args, **kwargs):
            sync(device)
            start = time.perf_counter()
            try:
                return solver(*args, **kwargs)
            finally:
                sync(device)
                seconds[where(*args)] += time.perf_counter() - start

        return solver, timed_solver

    wrappers = {
        "exact_weight_spectrum": lambda blk, *rest: (index[id(blk)], "weight"),
        "exact_input_spectrum": lambda blk, *rest: (index[id(blk)], "input"),
        "_bounded_stats": lambda b, wrt, *rest: (b, wrt),
    }
    originals = {}
    for name, where in wrappers.items():
        originals[name], timed_solver = wrap(name, where)
        setattr(hessian_report, name, timed_solver)
    try:
        sync(device)
        start = time.perf_counter()
        report = local_hessian_report(model, probe, max_samples=None)
        sync(device)
        total = time.perf_counter() - start
    finally:
        for name, solver in originals.items():
            setattr(hessian_report, name, solver)
    return report, seconds, total


def report_cost(args, device: torch.device, trainer: Trainer, ours: float, bare: float) -> None:
    """One report of every block at the batch size (per block), and the throughput with one report on
    the reproduction's REPORT_SAMPLES images every report_every steps."""
    report, seconds, total = timed_report(trainer.model, trainer.x_train[: args.batch].to(device), device)
    for block in range(len(trainer.model.blocks)):
        w, z = report.get(block, "weight"), report.get(block, "input")
        kappa = lambda s: f"{s.method:7s} κ {'>=' if s.estimated else '  '}{s.condition_number:9.3g}"  # noqa: E731
        print(
            f"    block {block}: weight {kappa(w)} {seconds[block, 'weight']:7.2f} s   "
            f"input {kappa(z)} {seconds[block, 'input']:7.2f} s"
        )
    print(f"  one report of all {len(trainer.model.blocks)} blocks at batch {args.batch}: {total:.2f} s")
    _, _, scheduled = timed_report(trainer.model, trainer.x_train[:REPORT_SAMPLES].to(device), device)
    with_reports = 1 / (1 / ours + scheduled / args.report_every)
    print(
        f"  the reproduction's report ({REPORT_SAMPLES} images): {scheduled:.2f} s; with one every "
        f"{args.report_every} steps: {with_reports:.2f} steps/s, ratio to bare {with_reports / bare:.2f}"
    )


def sibp_rates(steps: int, device: torch.device) -> None:
    """Steps/s of each algorithm in the sibp-* recipes (their networks, batch and solver settings, at
    step size 1) on random data of the datasets' shapes, and what a run's steps would take at that
    rate (training only: evaluations and reports not counted)."""
    shapes = {"mnist": (1, 28, 28), "cifar10": (3, 32, 32)}
    for name in ("sibp-mnist", "sibp-cifar10"):
        experiment = EXPERIMENTS[name]
        g = torch.Generator().manual_seed(0)
        x = torch.rand(2048, *shapes[experiment.dataset], generator=g)
        y = torch.randint(0, 10, (2048,), generator=g)
        data = Dataset(experiment.dataset, x, y, x[:256], y[:256], "classification", 10, shapes[experiment.dataset])
        for run in experiment.runs:
            if run.cfg.lr != 1:
                continue
            cfg = run.cfg.replace(device=str(device), n_train=len(x), n_test=256)
            trainer = Trainer(cfg, data)
            rate = timed(trainer.step, argparse.Namespace(steps=steps), device)
            print(
                f"  {name} {run.label:14s} {rate:8.2f} steps/s: {cfg.steps} steps in {cfg.steps / rate / 60:7.1f} min"
            )


def tiny_runs() -> None:
    for experiment in EXPERIMENTS:
        with tempfile.TemporaryDirectory() as tmp:
            start = time.perf_counter()
            result, _ = reproduce(experiment, Path(tmp), is_tiny=True, quiet=True)
            states = sorted({r["summary"]["state"] for r in result["runs"]})
            seconds = time.perf_counter() - start
            print(f"  bpviz reproduce {experiment} --tiny: {seconds:6.1f} s ({', '.join(states)})")


if __name__ == "__main__":
    main()
