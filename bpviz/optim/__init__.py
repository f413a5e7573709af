"""Training algorithms behind one interface (see ``base``): SGD, Adam, SA-SGD, ProxBP, SIBP.

Their options are declared in :mod:`bpviz.options` (re-exported here: ``Option``), where a config is
checked without importing this package."""

from __future__ import annotations

from ..config import ConfigError, RunConfig
from ..models import BlockNet
from ..options import Option
from .base import Algorithm, StepResult
from .proxbp import ProxBP
from .sa_sgd import SASGD
from .sgd import SGD, Adam
from .sibp import SIBP

ALGORITHMS: dict[str, type[Algorithm]] = {cls.name: cls for cls in (SGD, Adam, SASGD, ProxBP, SIBP)}


def algorithm_class(name: str) -> type[Algorithm]:
    if name not in ALGORITHMS:
        raise ConfigError(f"optimizer: got {name!r}; allowed: {', '.join(map(repr, ALGORITHMS))}")
    return ALGORITHMS[name]


def make_algorithm(cfg: RunConfig, model: BlockNet) -> Algorithm:
    """The algorithm ``cfg`` names, with its options, training ``model``."""
    return algorithm_class(cfg.optimizer)(model, cfg.lr, **cfg.optimizer_options)


__all__ = ["ALGORITHMS", "Algorithm", "Option", "StepResult", "make_algorithm"]
