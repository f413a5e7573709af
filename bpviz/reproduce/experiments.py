"""The papers' headline experiments as lists of runs, each run one ``RunConfig``.

Every recipe says where each of its settings comes from (``sources``): the paper, the authors' code,
or our choice where neither says (research/seeds.md §1.8, §2.10). ``tiny`` turns an experiment into
the same pipeline at a size that runs in seconds on a CPU, on synthetic files in the real formats.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from ..config import RunConfig

#: the per-run settings a --tiny reproduction overrides: a few hundred images, a few dozen steps
TINY = {"n_train": 256, "n_test": 128, "steps": 40, "batch_size": 32}
TINY_WIDTH = {"vgg13": 4, "mlp": 64}  # VGG13 at 4, 8, 16, 32, 32 channels; hidden MLP layers of 64


@dataclass(frozen=True)
class Run:
    label: str  # the run's name in the figures and files, e.g. "sgd lr=0.1"
    cfg: RunConfig


@dataclass(frozen=True)
class Experiment:
    name: str
    title: str
    figure: str  # "curves": metrics over steps, one line per run; "sweep": final metrics over step sizes
    dataset: str
    runs: tuple[Run, ...]
    sources: dict[str, str]  # setting -> where it comes from
    eval_every: int  # steps between evaluations on the full test set
    report_every: int  # steps between local-Hessian reports of every block
    checkpoint_every: int
    tiny: bool = False
    notes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def total_steps(self) -> int:
        return sum(run.cfg.steps for run in self.runs)


# --- paper 1: SGD vs SA-SGD on VGG13-BN ----------------------------------------------------------------
def _vgg13(dataset: str) -> Experiment:
    epochs, n_train, batch = 164, 50_000, 128
    base = RunConfig(
        name=f"vgg13-bn {dataset}",
        dataset=dataset,
        n_train=n_train,
        n_test=10_000,
        arch="vgg13",
        depth=10,
        width=64,
        activation="relu",
        init="kaiming",
        batch_norm=True,
        optimizer="sgd",
        optimizer_options={"momentum": 0.9, "weight_decay": 5e-4},
        lr=0.1,
        lr_schedule="step",
        augment=True,
        batch_size=batch,
        steps=epochs * n_train // batch,
    )
    sa = {"momentum": 0.9, "weight_decay": 5e-4, "amend": "bn_weights"}
    return Experiment(
        name=f"lhbp-vgg13-{dataset}",
        title=f"On the Local Hessian in Back-propagation: SGD vs SA-SGD, VGG13-BN on {dataset.upper()}",
        figure="curves",
        dataset=dataset,
        runs=(
            Run("sgd", base.replace(name=f"{base.name} sgd")),
            Run("sa_sgd", base.replace(name=f"{base.name} sa_sgd", optimizer="sa_sgd", optimizer_options=sa)),
        ),
        sources={
            "network (VGG13 with BN), data set, SGD vs SA-SGD": "the paper (Zhang, Chen, Liu 2018)",
            "classifier head (one Linear on 512 features)": "ours: the usual CIFAR VGG head; the paper does not say",
            "lr 0.1, momentum 0.9, weight decay 5e-4, batch 128, 164 epochs, x0.1 at 50% and 75%, crop+flip": (
                "ours: a common CIFAR VGG recipe; the paper's are not known (research/seeds.md §1.8)"
            ),
            "SA-SGD's scalar (sigma^2/gamma^2 on BN weights)": "ours: reconstructed, bpviz.optim.sa_sgd",
        },
        eval_every=n_train // batch,  # every epoch
        report_every=10 * n_train // batch,
        checkpoint_every=n_train // batch,
    )


# --- paper 2: SIBP vs ProxBP vs SGD over step sizes ------------------------------------------------------
SIBP_STEP_SIZES = (0.01, 0.1, 1.0, 10.0)


def _sweep_runs(base: RunConfig) -> tuple[Run, ...]:
    """SGD, ProxBP and SIBP at every step size of the sweep, from the same base run."""
    return tuple(
        Run(
            f"{algorithm} lr={lr:g}",
            base.replace(name=f"{base.name} {algorithm} lr={lr:g}", optimizer=algorithm, lr=lr),
        )
        for algorithm in ("sgd", "proxbp", "sibp")
        for lr in SIBP_STEP_SIZES
    )


def _sibp_mnist() -> Experiment:
    base = RunConfig(
        name="sibp mnist 784-500-10",
        dataset="mnist",
        n_train=60_000,
        n_test=10_000,
        depth=1,
        width=500,
        activation="relu",
        init="gaussian",
        init_std=0.05,
        bias_init="gaussian",
        batch_size=100,
        steps=5 * 60_000 // 100,
    )
    return Experiment(
        name="sibp-mnist",
        title="Semi-Implicit Back Propagation: SIBP vs ProxBP vs SGD over step sizes, MNIST 784-500-10",
        figure="sweep",
        dataset="mnist",
        runs=_sweep_runs(base),
        sources={
            "784-500-10 ReLU, N(0, 0.05^2) weights and biases, batch 100 with replacement, 5 epochs, lambda 1": (
                "the authors' code (main.m, sibp.m)"
            ),
            "SIBP's eta = the step size swept; SGD's lr; ProxBP's tau_theta": "ours: the sweep's axis",
            "step sizes 0.01, 0.1, 1, 10": "ours (the paper's are not known, research/seeds.md §2.10)",
            "ProxBP: solver and tau as bpviz's defaults": "ours (ProxProp's own defaults, research/seeds.md §3.2)",
        },
        eval_every=100,
        report_every=600,
        checkpoint_every=600,
    )


def _sibp_cifar10() -> Experiment:
    epochs, n_train, batch = 20, 50_000, 100
    base = RunConfig(
        name="sibp cifar10 3072-4000-1000-4000-10",
        dataset="cifar10",
        n_train=n_train,
        n_test=10_000,
        depth=3,
        widths=[4000, 1000, 4000],
        activation="relu",
        init="gaussian",
        init_std=0.05,
        bias_init="gaussian",
        batch_size=batch,
        steps=epochs * n_train // batch,
    )
    return Experiment(
        name="sibp-cifar10",
        title=(
            "Semi-Implicit Back Propagation: SIBP vs ProxBP vs SGD over step sizes, CIFAR-10 MLP 3072-4000-1000-4000-10"
        ),
        figure="sweep",
        dataset="cifar10",
        runs=_sweep_runs(base),
        sources={
            "CIFAR-10, SIBP vs ProxBP vs SGD": "the paper (Liu, Zhang)",
            "MLP 3072-4000-1000-4000-10": (
                "ours: the SIBP paper does not give its CIFAR-10 network; this is ProxProp's CIFAR-10 MLP "
                "(Frerix et al. 2018, paper_experiments.sh), the baseline SIBP is compared with"
            ),
            "ReLU, N(0, 0.05^2) weights and biases, batch 100 with replacement, lambda 1": (
                "the SIBP authors' code (main.m, sibp.m), as for MNIST"
            ),
            "20 epochs; step sizes 0.01, 0.1, 1, 10": "ours (the paper's are not known, research/seeds.md §2.10)",
        },
        eval_every=n_train // batch,
        report_every=5 * n_train // batch,
        checkpoint_every=n_train // batch,
    )


EXPERIMENTS = {e.name: e for e in (_vgg13("cifar10"), _vgg13("cifar100"), _sibp_mnist(), _sibp_cifar10())}


def get_experiment(name: str) -> Experiment:
    if name not in EXPERIMENTS:
        raise ValueError(f"experiment: got {name!r}; allowed: {', '.join(EXPERIMENTS)}")
    return EXPERIMENTS[name]


def tiny(experiment: Experiment, data_dir: str) -> Experiment:
    """The same runs at a size that takes seconds, reading the synthetic files in ``data_dir``."""
    runs = []
    for run in experiment.runs:
        cfg = run.cfg
        changes = {**TINY, "data_dir": data_dir, "width": TINY_WIDTH.get(cfg.arch, cfg.width)}
        if cfg.widths:
            changes["widths"] = [min(w, TINY_WIDTH["mlp"]) for w in cfg.widths]
        runs.append(Run(run.label, cfg.replace(**changes)))
    return replace(
        experiment,
        runs=tuple(runs),
        eval_every=10,
        report_every=20,
        checkpoint_every=20,
        tiny=True,
        notes=(*experiment.notes, f"--tiny: synthetic files, {TINY} and the width cut to fit seconds"),
    )


def with_data_dir(experiment: Experiment, data_dir: str) -> Experiment:
    return replace(experiment, runs=tuple(Run(r.label, r.cfg.replace(data_dir=data_dir)) for r in experiment.runs))
