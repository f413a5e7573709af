"""What each training algorithm accepts, as plain data: its options (default, type, allowed values or
range, meaning) and whether it trains only plain MLPs.

This module sits below both :mod:`bpviz.config` and :mod:`bpviz.optim` and imports neither (nor torch):
a config checks its optimizer's options here when it is made, and each algorithm takes its ``OPTIONS``
from here, so checking a config needs no optimizer code and no import circle. :class:`ConfigError` is
defined here for the same reason; :mod:`bpviz.config` re-exports it, and that is the name to use.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any


class ConfigError(ValueError):
    """An invalid run description; the message names the field and the allowed values."""


@dataclass(frozen=True)
class Option:
    """One hyperparameter of an algorithm: its default, type, allowed values or range, meaning.
    Numeric bounds are inclusive unless ``open_lo`` (value > lo) or ``open_hi`` (value < hi) is set."""

    default: Any
    help: str
    choices: tuple | None = None
    lo: float | None = None
    hi: float | None = None
    open_lo: bool = False
    open_hi: bool = False

    def check(self, algorithm: str, name: str, value: Any) -> Any:
        """``value`` if allowed (an int where a float is declared becomes that float), else ConfigError."""
        where = f"optimizer_options.{name} (optimizer {algorithm!r})"
        kind = type(self.default)
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if type(value) is not kind:
            raise ConfigError(f"{where}: got {value!r}; allowed: a {kind.__name__}")
        if self.choices is not None and value not in self.choices:
            raise ConfigError(f"{where}: got {value!r}; allowed: one of {', '.join(map(repr, self.choices))}")
        if isinstance(value, (int, float)) and not isinstance(value, bool) and not self.in_range(value):
            raise ConfigError(f"{where}: got {value!r}; allowed: a finite number {self.bounds()}".rstrip())
        return value

    def in_range(self, value: float) -> bool:
        if not math.isfinite(value):
            return False
        if self.lo is not None and (value <= self.lo if self.open_lo else value < self.lo):
            return False
        return self.hi is None or (value < self.hi if self.open_hi else value <= self.hi)

    def bounds(self) -> str:
        """The range in words, e.g. ``>= 0.0 and < 1.0`` (empty when unbounded)."""
        lo = None if self.lo is None else f"{'>' if self.open_lo else '>='} {self.lo}"
        hi = None if self.hi is None else f"{'<' if self.open_hi else '<='} {self.hi}"
        return " and ".join(s for s in (lo, hi) if s)


_SGD_OPTIONS = {
    "momentum": Option(0.0, "heavy-ball momentum", lo=0.0, hi=1.0),
    "nesterov": Option(False, "Nesterov momentum (needs momentum > 0)"),
    "weight_decay": Option(0.0, "L2 penalty added to the gradient", lo=0.0),
}

#: algorithm name -> its options; the algorithm classes in :mod:`bpviz.optim` take theirs from here.
ALGORITHM_OPTIONS: dict[str, dict[str, Option]] = {
    "sgd": _SGD_OPTIONS,
    "adam": {
        "beta1": Option(0.9, "first-moment decay", lo=0.0, hi=1.0),
        "beta2": Option(0.999, "second-moment decay", lo=0.0, hi=1.0),
        "eps": Option(1e-8, "denominator guard", lo=0.0),
        "weight_decay": Option(0.0, "L2 penalty added to the gradient", lo=0.0),
    },
    "sa_sgd": {
        **_SGD_OPTIONS,
        "amend": Option(
            "bn_weights",
            "which tensors are amended: the weights followed by BN (sigma^2/gamma^2), "
            "every tensor (trace scalars), or only the head (ablation)",
            choices=("bn_weights", "all", "head"),
        ),
        "granularity": Option("block", "one scale per block, or one per output channel", choices=("block", "channel")),
        "statistics": Option(
            "batch", "scalars from this batch, or a running EMA of them", choices=("batch", "running")
        ),
        "ema": Option(0.9, "EMA momentum when statistics='running'", lo=0.0, hi=1.0),
        "normalize": Option(True, "divide the scales by their geometric mean, so lr keeps SGD's meaning"),
        "refresh_every": Option(
            20, "recompute the scalars every N steps (they drift slowly); reuse them between", lo=1
        ),
    },
    "proxbp": {
        "tau": Option(
            1.0, "explicit step size on the pre-activations z (the official code uses 1)", lo=0.0, open_lo=True
        ),
        "solver": Option(
            "exact", "proximal solve: exact Cholesky, or a few conjugate-gradient steps", choices=("exact", "cg")
        ),
        "cg_iters": Option(3, "conjugate-gradient iterations per block (solver 'cg')", lo=1),
        "momentum": Option(0.0, "heavy-ball momentum of the wrapper SGD", lo=0.0, hi=1.0, open_hi=True),
        "nesterov": Option(False, "Nesterov momentum in the wrapper SGD (needs momentum > 0)"),
    },
    "sibp": {
        "solver": Option(
            "authors",
            "prox solver: the authors' FR-CG + Armijo, or bpviz's Gauss-Newton/CG",
            choices=("authors", "gauss_newton"),
        ),
        "lam": Option(1.0, "proximal weight λ (prox step size 1/λ); authors' default 1", lo=0.0, hi=1e12, open_lo=True),
        "fr_iters": Option(
            5, "authors' solver: Fletcher-Reeves iterations per W or b solve (authors: 5)", lo=1, hi=100
        ),
        "armijo_rho": Option(
            0.6, "authors' solver: backtracking factor ρ (authors: 0.6)", lo=0.0, hi=1.0, open_lo=True, open_hi=True
        ),
        "armijo_sigma": Option(
            0.1,
            "authors' solver: Armijo sufficient-decrease constant σ (authors: 0.1)",
            lo=0.0,
            hi=1.0,
            open_lo=True,
            open_hi=True,
        ),
        "inner_iters": Option(1, "gauss_newton solver: Gauss-Newton iterations per hidden layer", lo=1, hi=100),
        "cg_iters": Option(
            2, "gauss_newton solver: conjugate-gradient iterations per Gauss-Newton step", lo=1, hi=1000
        ),
    },
}

#: the algorithms whose layer-wise problems assume "affine map, then elementwise activation" per block
PLAIN_MLP_ONLY = ("proxbp", "sibp")


def not_a_plain_mlp(algorithm: str, why: str) -> ConfigError:
    """The refusal of an MLP-only algorithm, saying why (for a config here; for a built model, in bpviz.optim)."""
    return ConfigError(
        f"optimizer {algorithm!r}: {algorithm} is defined only for plain MLPs (Linear blocks followed by an "
        "elementwise activation): its layer-wise proximal problems assume each block is an affine map followed "
        f"by an elementwise activation, with no coupling between samples and no extra path around the block. {why}"
    )


def resolve_options(algorithm: str, schema: dict[str, Option], given: dict[str, Any]) -> dict[str, Any]:
    """Defaults filled in, every given option checked; unknown names list the allowed ones."""
    unknown = sorted(set(given) - set(schema))
    if unknown:
        allowed = ", ".join(schema) or "none"
        raise ConfigError(
            f"optimizer_options: unknown option(s) {unknown} for optimizer {algorithm!r}; allowed: {allowed}"
        )
    return {name: opt.check(algorithm, name, given.get(name, opt.default)) for name, opt in schema.items()}


def check_optimizer(optimizer: str, options: dict[str, Any], *, arch: str, batch_norm: bool, skip: bool) -> None:
    """Refuse, before anything trains, an unknown algorithm, bad options, or a model it cannot train
    (:func:`bpviz.config.validate` passes the config's fields)."""
    if optimizer not in ALGORITHM_OPTIONS:
        raise ConfigError(f"optimizer: got {optimizer!r}; allowed: {', '.join(map(repr, ALGORITHM_OPTIONS))}")
    resolve_options(optimizer, ALGORITHM_OPTIONS[optimizer], options)
    if optimizer not in PLAIN_MLP_ONLY:
        return
    if arch in ("cnn", "vgg13"):
        why = f"arch {arch!r} has convolution blocks (and a pooled head); use arch 'mlp'."
    elif batch_norm:
        why = (
            "batch_norm=True: BatchNorm couples the samples of a batch, so a block is no longer "
            "'affine then elementwise activation' sample by sample; set batch_norm to false."
        )
    elif skip:
        why = (
            "skip=True: a skip connection adds the block input to its output, which the layer-wise "
            "fit of the block's output does not model; set skip to false."
        )
    else:
        return
    raise not_a_plain_mlp(optimizer, why)
