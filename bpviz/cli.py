"""The ``bpviz`` command line (also ``python -m bpviz``)."""

from __future__ import annotations

import argparse
import sys

import torch

from .config import RunConfig
from .data import load_dataset
from .local_hessian import LocalHessianReport, local_hessian_report
from .models import build_model, network_loss


def format_report(report: LocalHessianReport) -> str:
    """A per-block table of the local-Hessian numbers the dashboard plots."""
    rows = [f"{'block':>5} {'wrt':>6} {'method':>7} {'lambda_max':>11} {'lambda_min>0':>12} {'cond':>10} {'trace':>10}"]
    for s in report.stats:
        rows.append(f"{s.block:>5} {s.wrt:>6} {s.method:>7} {s.lambda_max:>11.4g} {s.lambda_min_nonzero:>12.4g} "
                    f"{s.condition_number:>10.4g} {s.trace:>10.4g}")
    note = f" (first {report.n_samples} of {report.batch_size} samples)" if report.subsampled else ""
    rows.append(f"computed in {report.seconds * 1e3:.0f} ms{note}")
    return "\n".join(rows)


def _demo(args: argparse.Namespace) -> int:
    """Train the same deep tanh net with Gaussian and orthogonal init and show their local Hessians."""
    base = RunConfig(dataset="spirals", depth=8, width=32, activation="tanh", lr=0.05, steps=args.steps, device="cpu")
    for cfg in (base.replace(name="gaussian init", init="gaussian", init_std=0.1),
                base.replace(name="orthogonal init", init="orthogonal")):
        data = load_dataset(cfg)
        torch.manual_seed(cfg.seed)
        model = build_model(cfg, data.input_shape, data.n_outputs)
        print(f"\n== {cfg.name}: local Hessians at initialisation")
        print(format_report(local_hessian_report(model, data.x_train[: cfg.batch_size])))
        opt = torch.optim.SGD(model.parameters(), lr=cfg.lr)
        for step in range(cfg.steps):
            idx = torch.randint(0, data.x_train.shape[0], (cfg.batch_size,))
            loss = network_loss(model(data.x_train[idx]), data.y_train[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
        print(f"after {cfg.steps} SGD steps at lr {cfg.lr}: train loss {loss.item():.4f}")
    return 0


def _compare(args: argparse.Namespace) -> int:
    """Run a headless comparison and write JSON, CSV and HTML under --out."""
    from . import compare

    command = "bpviz " + " ".join(args.argv)
    if args.kind == "sweep":
        result = compare.step_size_sweep(args.dataset or "mnist1d", step_sizes=args.lrs or compare.DEFAULT_STEP_SIZES,
                                         steps=args.steps, seed=args.seed)
        for row in result["rows"]:
            print(f"{row['algorithm']:>7} lr={row['lr']:<7g} {row['status']:>9} train loss {row['final_train_loss']:.4g}"
                  f"  test acc {row['final_test_accuracy']:.3f}")
        print("largest stable step:", result["largest_stable_step"])
    else:
        result = compare.sa_sgd_comparison(args.dataset or "digits", step_sizes=args.lrs or (0.03, 0.1, 0.3, 1.0),
                                           steps=args.steps, seed=args.seed)
        for row in result["rows"]:
            print(f"{row['arch']:>4} {row['algorithm']:>7} lr={row['lr']:<6g} {row['status']:>9} "
                  f"train loss {row['final_train_loss']:.4g}  test acc {row['final_test_accuracy']:.3f}")
    for path in compare.write_outputs(result, args.out, command):
        print("wrote", path)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bpviz", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="headless demo: local-Hessian tables for two inits, then a short training")
    demo.add_argument("--steps", type=int, default=300)
    demo.set_defaults(func=_demo)
    cmp = sub.add_parser("compare", help="headless algorithm comparisons -> JSON, CSV, HTML")
    cmp.add_argument("kind", choices=["sweep", "sa-sgd"], help="sweep: SGD/ProxBP/SIBP over step sizes; sa-sgd: SA-SGD vs SGD on BN nets")
    cmp.add_argument("--dataset", default=None, help="default: mnist1d for sweep, digits for sa-sgd")
    cmp.add_argument("--lrs", type=float, nargs="+", default=None, help="step sizes to try")
    cmp.add_argument("--steps", type=int, default=300)
    cmp.add_argument("--seed", type=int, default=0)
    cmp.add_argument("--out", default="results")
    cmp.set_defaults(func=_compare)
    argv = sys.argv[1:] if argv is None else argv
    args = parser.parse_args(argv)
    args.argv = argv
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
