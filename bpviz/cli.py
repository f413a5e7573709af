"""The ``bpviz`` command line (also ``python -m bpviz``)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .config import ConfigError, RunConfig
from .hessian_report import ZERO_RTOL, LocalHessianReport, local_hessian_report
from .loop import every, train_loop
from .reproduce.report import FigureError
from .train import Trainer


def format_report(report: LocalHessianReport) -> str:
    """A per-block table of the local-Hessian numbers the dashboard plots."""
    rows = [
        f"{'block':>5} {'wrt':>6} {'method':>7} {'lambda_max':>11} {'lambda_min>0':>12} {'cond':>10} {'trace':>10}"
        f" {'<floor':>6}"
    ]
    for s in report.stats:  # bounds say so: lambda_max >=, lambda_min <=, kappa >=
        lo = ">=" if s.estimated else ""
        kappa, lmin = (">=", "<=") if s.kappa_is_bound else ("", "")
        rows.append(
            f"{s.block:>5} {s.wrt:>6} {s.method:>7} {lo + format(s.lambda_max, '.4g'):>11} "
            f"{lmin + format(s.lambda_min_nonzero, '.4g'):>12} {kappa + format(s.condition_number, '.4g'):>10} "
            f"{s.trace:>10.4g} {s.below_floor:>6}"
        )
    if any(s.estimated for s in report.stats):
        rows.append("lanczos rows: certified bounds (>=, <=); their traces are estimates")
    if any(s.below_floor for s in report.stats):
        rows.append(
            f"<floor: eigenvalues above round-off counted as zero (under {ZERO_RTOL:g} lambda_max); "
            "where there are any, cond >= and lambda_min>0 <= the value shown"
        )
    note = f" (first {report.n_samples} of {report.batch_size} samples)" if report.subsampled else ""
    rows.append(f"computed in {report.seconds * 1e3:.0f} ms{note}")
    return "\n".join(rows)


def _demo(args: argparse.Namespace) -> int:
    """Train the same deep tanh net with Gaussian and orthogonal init and show their local Hessians."""
    base = RunConfig(dataset="spirals", depth=8, width=32, activation="tanh", lr=0.05, steps=args.steps, device="cpu")
    for cfg in (
        base.replace(name="gaussian init", init="gaussian", init_std=0.1),
        base.replace(name="orthogonal init", init="orthogonal"),
    ):
        trainer = Trainer(cfg)
        print(f"\n== {cfg.name}: local Hessians at initialisation")
        print(format_report(local_hessian_report(trainer.model, trainer.x_train[: cfg.batch_size])))
        end = train_loop(trainer, cfg.steps, check=every(cfg.steps))
        loss = trainer.evaluate("train")["loss"]
        print(f"after {end.step} SGD steps at lr {cfg.lr} ({end.status}): loss on the training split {loss:.4f}")
    return 0


def _compare(args: argparse.Namespace) -> int:
    """Run a headless comparison and write JSON, CSV and HTML under --out."""
    from . import compare

    command = "bpviz " + " ".join(args.argv)
    how = dict(steps=args.steps, seed=args.seed, workers=args.workers, ray=args.ray, progress=True)
    if args.kind == "sweep":
        result = compare.step_size_sweep(
            args.dataset or "mnist1d", step_sizes=args.lrs or compare.DEFAULT_STEP_SIZES, **how
        )
        for row in result["rows"]:
            print(
                f"{row['algorithm']:>7} lr={row['lr']:<7g} {row['status']:>9} train loss {row['final_train_loss']:.4g}"
                f"  test acc {row['final_test_accuracy']:.3f}"
            )
        print("largest stable step:", result["largest_stable_step"])
    else:
        result = compare.sa_sgd_comparison(
            args.dataset or "digits", step_sizes=args.lrs or compare.SA_SGD_STEP_SIZES, **how
        )
        for row in result["rows"]:
            print(
                f"{row['arch']:>4} {row['algorithm']:>17} lr={row['lr']:<6g} {row['status']:>9} "
                f"train loss {row['final_train_loss']:.4g}  test acc {row['final_test_accuracy']:.3f}"
            )
    for path in compare.write_outputs(result, args.out, command):
        print("wrote", path)
    return 0


def _reproduce(args: argparse.Namespace) -> int:
    """A paper's headline experiment: train its runs, write results.json, .csv and .html under --out."""
    from .reproduce import reproduce

    out = args.out or f"results/{args.name}{'-tiny' if args.tiny else ''}"
    result, paths = reproduce(
        args.name,
        out,
        data_dir=args.data_dir,
        is_tiny=args.tiny,
        resume=args.resume,
        workers=args.workers,
        ray=args.ray,
        command="bpviz " + " ".join(args.argv),
        png=args.png,
    )
    for run in result["runs"]:
        summary = run["summary"]
        extra = f"  train loss {summary['train_loss']:.4g}" if "train_loss" in summary else ""
        print(
            f"{run['label']:>20} {summary['state']:>9} at step {summary.get('step', 0)}{extra}",
            summary.get("error", ""),
        )
    for path in paths:
        print("wrote", path)
    return 0 if all(r["summary"]["state"] != "failed" for r in result["runs"]) else 1


def _load_config(args: argparse.Namespace) -> RunConfig:
    from .checkpoint import read_checkpoint
    from .presets import get_preset

    if args.resume:
        cfg = RunConfig.from_dict(read_checkpoint(_checkpoint_path(args.resume))["config"])
    elif args.preset:
        cfg = get_preset(args.preset)
    else:
        try:
            cfg = RunConfig.from_json(Path(args.config).read_text())
        except OSError as exc:
            raise ConfigError(f"cannot read config file {args.config}: {exc.strerror}") from None
    return cfg.replace(steps=args.steps) if args.steps else cfg


def _checkpoint_path(given: str) -> Path:
    path = Path(given)
    return path / "checkpoint.pt" if path.is_dir() else path


def _train(args: argparse.Namespace) -> int:
    """Train one run live, with a progress bar, saving it under --runs-dir (resumable)."""
    from .session import ENDED, TrainingSession

    cfg = _load_config(args)
    checkpoint = _checkpoint_path(args.resume) if args.resume else None
    session = TrainingSession(cfg, runs_dir=args.runs_dir, checkpoint=checkpoint)
    sub = session.subscribe()
    try:
        from tqdm import tqdm

        bar = tqdm(total=cfg.steps, initial=session.step, unit="step", desc=cfg.name or "train")
    except ImportError:  # the engine runs without the app extras; report plainly instead
        bar = None
    session.start()
    loss = float("nan")
    try:
        while True:
            event = sub.get(timeout=0.5)
            if event is None:
                continue
            points = event.get("points", {}).get("batch_loss")
            loss = points[-1][1] if points else loss
            if bar is not None:
                bar.update(event["step"] - bar.n)
                bar.set_postfix(loss=f"{loss:.4g}", steps_s=f"{event['steps_per_s']:.0f}")
            if event["state"] in {s.value for s in ENDED}:
                break
    except KeyboardInterrupt:
        session.stop()
    finally:
        if bar is not None:
            bar.close()
    session.wait()
    test = session.history.last("test_accuracy")
    print(
        f"{session.state.value} at step {session.step}: batch loss {loss:.4g}"
        + (f", test accuracy {test:.3f}" if test is not None else "")
        + (f" ({session.message})" if session.message else "")
    )
    print(
        f"saved to {session.writer.path}"
        + (
            " (resume with: bpviz train --resume " + str(session.writer.path) + ")"
            if (session.writer.path / "checkpoint.pt").is_file()
            else ""
        )
    )
    return 0 if session.state.value == "finished" else 1


def _presets(args: argparse.Namespace) -> int:
    from .presets import describe_presets

    for name, text in describe_presets():
        print(f"{name:<24} {text}")
    return 0


def _runs(args: argparse.Namespace) -> int:
    from .runs import list_runs

    runs, problems = list_runs(args.runs_dir)
    for run in runs:
        last = next((r for r in reversed(run.records) if "batch_loss" in r), {})
        print(
            f"{run.run_id:<48} {run.status.get('state', '?'):<9} step {last.get('step', 0):>7}"
            f"  batch loss {last.get('batch_loss', float('nan')):.4g}  {run.describe_step_sizes()}"
        )
    for problem in problems:
        print("skipped:", problem, file=sys.stderr)
    if not runs:
        print(f"no runs in {args.runs_dir}")
    return 0


def _export(args: argparse.Namespace) -> int:
    from .runs import export_csv, load_run

    path = Path(args.run)
    if not path.is_dir():
        path = Path(args.runs_dir) / args.run
    run = load_run(path)
    out = export_csv(run, args.output or path / "metrics.csv")
    print(f"wrote {out} ({len(run.records)} records)")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bpviz", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="headless demo: local-Hessian tables for two inits, then a short training")
    demo.add_argument("--steps", type=int, default=300)
    demo.set_defaults(func=_demo)
    cmp = sub.add_parser("compare", help="headless algorithm comparisons -> JSON, CSV, HTML")
    cmp.add_argument(
        "kind",
        choices=["sweep", "sa-sgd"],
        help="sweep: SGD/ProxBP/SIBP over step sizes; sa-sgd: SA-SGD variants vs SGD on BN nets",
    )
    cmp.add_argument("--dataset", default=None, help="default: mnist1d for sweep, digits for sa-sgd")
    cmp.add_argument("--lrs", type=float, nargs="+", default=None, help="step sizes to try")
    cmp.add_argument("--steps", type=int, default=300)
    cmp.add_argument("--seed", type=int, default=0)
    cmp.add_argument("--out", default="results")
    cmp.add_argument("--workers", type=int, default=None, help="worker processes (default: one per core; 0: this one)")
    cmp.add_argument("--ray", default=None, help="run on a Ray cluster: 'auto' or HOST:PORT (bpviz[cluster])")
    cmp.set_defaults(func=_compare)
    from .reproduce import EXPERIMENTS

    rep = sub.add_parser("reproduce", help="a paper's headline experiment -> JSON, CSV, HTML (--tiny: in seconds)")
    rep.add_argument("name", choices=list(EXPERIMENTS))
    rep.add_argument("--data-dir", help="the folder with the data set's original files")
    rep.add_argument("--tiny", action="store_true", help="the same pipeline on synthetic files, in seconds")
    rep.add_argument("--out", help="where runs and results go (default: results/NAME, results/NAME-tiny)")
    rep.add_argument("--resume", action="store_true", help="go on from the runs' last checkpoints under --out")
    rep.add_argument("--workers", type=int, default=None, help="worker processes (default: one per CPU core)")
    rep.add_argument("--ray", default=None, help="run on a Ray cluster: 'auto' or HOST:PORT (bpviz[cluster])")
    rep.add_argument("--png", action="store_true", help="also every figure as out/figures/NAME.png (bpviz[figures])")
    rep.set_defaults(func=_reproduce)
    runs_dir = dict(default="runs", help="the runs folder (default: runs)")
    train = sub.add_parser("train", help="train one run live with a progress bar; saved under --runs-dir")
    source = train.add_mutually_exclusive_group(required=True)
    source.add_argument("--preset", help="a preset name (see `bpviz presets`)")
    source.add_argument("--config", help="a RunConfig JSON file")
    source.add_argument(
        "--resume",
        help="a checkpoint.pt (every finished or stopped run leaves one in its folder), "
        "or a run folder: go on from its step with its config",
    )
    train.add_argument(
        "--steps", type=int, default=None, help="override the number of steps (with --resume: the total to reach)"
    )
    train.add_argument("--runs-dir", **runs_dir)
    train.set_defaults(func=_train)
    sub.add_parser("presets", help="list the presets").set_defaults(func=_presets)
    runs = sub.add_parser("runs", help="list saved runs")
    runs.add_argument("--runs-dir", **runs_dir)
    runs.set_defaults(func=_runs)
    export = sub.add_parser("export", help="export a saved run")
    export.add_argument("run", help="a run folder, or a run id inside --runs-dir")
    export.add_argument("--csv", action="store_true", required=True, help="as CSV (the one format for now)")
    export.add_argument("--runs-dir", **runs_dir)
    export.add_argument("--output", default=None, help="CSV path (default: metrics.csv in the run folder)")
    export.set_defaults(func=_export)
    argv = sys.argv[1:] if argv is None else argv
    args = parser.parse_args(argv)
    args.argv = argv
    try:
        return args.func(args)
    except (ConfigError, ValueError) as exc:
        print(f"bpviz: error: {exc}", file=sys.stderr)
        return 2
    except FigureError as exc:  # the runs and the other result files are written
        print(f"bpviz: error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
