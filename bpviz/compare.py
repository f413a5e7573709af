"""Headless comparisons of the training algorithms, written as JSON, CSV and a self-contained HTML page.

(a) ``step_size_sweep``: SGD vs ProxBP vs SIBP over a sweep of step sizes: final train loss, test
accuracy and the largest step size each stays stable at. "Step size" is each algorithm's own
``lr``: SGD's learning rate, ProxBP's proximal step tau_theta, SIBP's neuron step eta (lambda=1 and
the authors' solver, as in their code). ProxBP tends to SGD with that learning rate as tau_theta -> 0;
SIBP does not tend to SGD as eta -> 0 at lambda = 1 (only as lambda -> infinity, with step eta/lambda
on the summed loss), so its eta is not comparable one-to-one with SGD's lr. A run is *stable* when it
finishes without NaN/Inf and ends with a lower train loss than it started with and (classification) a
train accuracy of at least twice chance.
(b) ``sa_sgd_comparison``: SGD and the SA-SGD variants (``amend``: the BN weights, every tensor, and the
head alone as an ablation of the head's learning rate) on BN networks (MLP and CNN) with the same data,
steps and learning rates. The ``algorithm`` column names the variant.
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Sequence
from pathlib import Path

from . import html_plot
from .config import RunConfig
from .data import Dataset, load_dataset
from .reproduce.runner import RunJob
from .train import RunResult, run

SWEEP_ALGORITHMS = ("sgd", "proxbp", "sibp")
DEFAULT_STEP_SIZES = (0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0, 30.0, 100.0)
#: the grid of (b); it reaches lr 3, where the sgd-bn / sa-sgd-bn presets train
SA_SGD_STEP_SIZES = (0.03, 0.1, 0.3, 1.0, 3.0)
#: (b)'s rows: label -> (optimizer, its options besides momentum)
SA_SGD_VARIANTS = {
    "sgd": ("sgd", {}),
    "sa_sgd bn_weights": ("sa_sgd", {"amend": "bn_weights"}),
    "sa_sgd all": ("sa_sgd", {"amend": "all"}),
    "sa_sgd head": ("sa_sgd", {"amend": "head"}),
}


#: (n_train, n_test) per dataset for the comparisons: digits has only 1797 images.
SIZES = {"digits": (1400, 397)}


def result_row(result: RunResult, n_classes: int, **extra) -> dict:
    """One run summarised (names: ``bpviz.metrics``); ``extra`` columns first, e.g. the dataset."""
    first, last = result.records[0], result.final
    learned = last.get("train_accuracy", 1.0) >= 2.0 / n_classes
    stable = result.status == "finished" and last.get("train_loss", math.inf) < first["train_loss"] and learned
    return {
        **extra,
        "algorithm": result.cfg.optimizer,
        "lr": result.cfg.lr,
        "status": result.status,
        "diverged_at": result.diverged_at,
        "initial_train_loss": first["train_loss"],
        "final_train_loss": last.get("train_loss", math.nan),
        "final_test_accuracy": last.get("test_accuracy", math.nan),
        "stable": stable,
    }


def step_size_sweep(
    dataset: str = "mnist1d",
    step_sizes=DEFAULT_STEP_SIZES,
    steps: int = 300,
    seed: int = 0,
    algorithms=SWEEP_ALGORITHMS,
    workers: int | None = None,
    ray: str | None = None,
    progress: bool = False,
    **overrides,
) -> dict:
    """(a): every algorithm at every step size on the same data and initialisation."""
    execution = {"workers": workers, "ray": ray, "progress": progress}
    n_train, n_test = SIZES.get(dataset, (4000, 1000))
    base = RunConfig(
        dataset=dataset,
        depth=2,
        width=128,
        activation="relu",
        init="kaiming",
        batch_size=100,
        steps=steps,
        seed=seed,
        n_train=n_train,
        n_test=n_test,
        device="cpu",
        **overrides,
    )
    return sweep(base, algorithms, step_sizes, eval_every=max(1, steps // 10), **execution)


def run_job(job: RunJob) -> dict:
    """One comparison run in a worker (a process or a Ray task): its records and how it ended."""
    result = run(RunConfig.from_dict(job.config), eval_every=job.eval_every)
    return {"label": job.label, "records": result.records, "status": result.status, "diverged_at": result.diverged_at}


def run_configs(
    configs: Sequence[RunConfig],
    eval_every: int,
    data: Dataset | None = None,
    workers: int | None = None,
    ray: str | None = None,
    progress: bool = False,
) -> list[RunResult]:
    """Every config, headless: in this process when ``data`` is given or ``workers`` is 0, else in
    worker processes (``workers``, default one per core) or, given ``ray`` (``auto`` or HOST:PORT),
    as Ray tasks; a run that fails there is retried once (said so with ``progress``, which also
    shows a bar over the runs that ended), then raises."""
    if data is not None or workers == 0:
        return [run(cfg, data, eval_every=eval_every) for cfg in configs]
    jobs = [
        RunJob(f"run {i}", cfg.to_dict(), "", eval_every, eval_every, eval_every, False)
        for i, cfg in enumerate(configs)
    ]
    if ray is not None:
        from .reproduce.ray_executor import run_ray

        outs = run_ray(jobs, 0, ray, quiet=not progress, target=run_job, desc="compare")
    else:
        from .reproduce.executor import run_local

        outs = run_local(jobs, 0, workers=workers, quiet=not progress, target=run_job, desc="compare")
    failed = [out for out in outs if out.get("state") == "failed"]
    if failed:
        raise RuntimeError(f"{len(failed)} comparison runs failed: {failed[0]['error']}")
    return [RunResult(cfg, out["records"], out["status"], out["diverged_at"]) for cfg, out in zip(configs, outs)]


def sweep(
    base: RunConfig,
    algorithms: Sequence[str],
    step_sizes: Sequence[float],
    data: Dataset | None = None,
    eval_every: int | None = None,
    workers: int | None = None,
    ray: str | None = None,
    progress: bool = False,
) -> dict:
    """Every algorithm at every step size from ``base`` (the same data and initialisation): rows,
    the largest stable step per algorithm, and every run's records. Any base config works, e.g.
    the SIBP authors' 784-500-10 MNIST net (notebook 04). Where the runs go: :func:`run_configs`."""
    n_outputs = (data or load_dataset(base.replace(n_train=1, n_test=1))).n_outputs
    configs = [base.replace(optimizer=a, lr=lr) for a in algorithms for lr in step_sizes]
    results = run_configs(configs, eval_every or max(1, base.steps // 10), data, workers, ray, progress)
    rows, curves = [], {}
    for cfg, result in zip(configs, results, strict=True):
        rows.append(result_row(result, n_outputs, dataset=base.dataset))
        curves[f"{cfg.optimizer} lr={cfg.lr:g}"] = result.records
    largest = {a: max((r["lr"] for r in rows if r["algorithm"] == a and r["stable"]), default=None) for a in algorithms}
    return {
        "kind": "step_size_sweep",
        "base_config": base.to_dict(),
        "rows": rows,
        "largest_stable_step": largest,
        "curves": curves,
    }


def sa_sgd_comparison(
    dataset: str = "digits",
    step_sizes=SA_SGD_STEP_SIZES,
    steps: int = 300,
    seed: int = 0,
    workers: int | None = None,
    ray: str | None = None,
    progress: bool = False,
    **overrides,
) -> dict:
    """(b): every SA-SGD variant vs SGD (all with momentum 0.9) on BN networks, MLP and CNN, equal budgets;
    the runs go where :func:`run_configs` says."""
    rows, curves = [], {}
    for arch, depth, width in (("mlp", 6, 64), ("cnn", 4, 16)):
        n_train, n_test = SIZES.get(dataset, (4000, 1000))
        base = RunConfig(
            dataset=dataset,
            arch=arch,
            depth=depth,
            width=width,
            batch_norm=True,
            activation="relu",
            init="kaiming",
            batch_size=64,
            steps=steps,
            seed=seed,
            n_train=n_train,
            n_test=n_test,
            device="cpu",
            **overrides,
        )
        n_outputs = load_dataset(base.replace(n_train=1, n_test=1)).n_outputs
        grid = [(label, lr) for label in SA_SGD_VARIANTS for lr in step_sizes]
        configs = [
            base.replace(
                optimizer=SA_SGD_VARIANTS[label][0],
                lr=lr,
                optimizer_options={"momentum": 0.9, **SA_SGD_VARIANTS[label][1]},
            )
            for label, lr in grid
        ]
        results = run_configs(configs, max(1, steps // 10), workers=workers, ray=ray, progress=progress)
        for (label, lr), result in zip(grid, results, strict=True):
            rows.append({**result_row(result, n_outputs, arch=arch), "algorithm": label})
            curves[f"{arch} {label} lr={lr:g}"] = result.records
    best: dict[str, dict | None] = {}
    for arch in ("mlp", "cnn"):
        for label in SA_SGD_VARIANTS:
            mine = [r for r in rows if r["arch"] == arch and r["algorithm"] == label and r["status"] == "finished"]
            best[f"{arch} {label}"] = min(mine, key=lambda r: r["final_train_loss"], default=None)
    return {"kind": "sa_sgd_comparison", "rows": rows, "best": best, "curves": curves}


def write_outputs(result: dict, out_dir: str | Path, command: str) -> list[Path]:
    """``result.json`` (everything), ``result.csv`` (one row per run) and ``result.html`` (charts)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    kind = result["kind"]
    paths = [out / f"{kind}.json", out / f"{kind}.csv", out / f"{kind}.html"]
    paths[0].write_text(json.dumps({**result, "command": command}, indent=1, default=str))
    columns = list(result["rows"][0])
    with paths[1].open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=columns)
        writer.writeheader()
        writer.writerows(result["rows"])
    parts = [f"<p>Produced by <code>{command}</code>.</p>"]
    groups = sorted({(r.get("dataset") or r.get("arch")) for r in result["rows"]})
    for group in groups:
        rows = [r for r in result["rows"] if (r.get("dataset") or r.get("arch")) == group]
        series_loss, series_acc = {}, {}
        for algorithm in dict.fromkeys(r["algorithm"] for r in rows):
            mine = [r for r in rows if r["algorithm"] == algorithm]
            lrs = [r["lr"] for r in mine]
            series_loss[algorithm] = (
                lrs,
                [r["final_train_loss"] if r["status"] == "finished" else math.nan for r in mine],
            )
            series_acc[algorithm] = (
                lrs,
                [r["final_test_accuracy"] if r["status"] == "finished" else math.nan for r in mine],
            )
        parts.append(f"<h2>{group}</h2>")
        parts.append(
            html_plot.line_chart(
                series_loss, f"{group}: final train loss", "step size", "train loss", logx=True, logy=True
            )
        )
        parts.append(
            html_plot.line_chart(series_acc, f"{group}: final test accuracy", "step size", "accuracy", logx=True)
        )
        if kind == "sa_sgd_comparison":
            curves = {
                name: (
                    [r["step"] for r in recs if "train_loss" in r],
                    [r["train_loss"] for r in recs if "train_loss" in r],
                )
                for name, recs in result["curves"].items()
                if name.startswith(group)
            }
            parts.append(
                html_plot.line_chart(curves, f"{group}: train loss during training", "step", "train loss", logy=True)
            )
        parts.append(html_plot.table(rows, columns))
    paths[2].write_text(html_plot.page(kind.replace("_", " "), parts))
    return paths
