"""Training algorithms behind one interface (see ``base``): SGD, Adam, SA-SGD, ProxBP, SIBP."""

from __future__ import annotations

from ..config import ConfigError, RunConfig
from ..models import BlockNet
from .base import Algorithm, Option, StepResult, resolve_options
from .proxbp import ProxBP
from .sa_sgd import SASGD
from .sgd import SGD, Adam
from .sibp import SIBP

ALGORITHMS: dict[str, type[Algorithm]] = {cls.name: cls for cls in (SGD, Adam, SASGD, ProxBP, SIBP)}


def algorithm_class(name: str) -> type[Algorithm]:
    if name not in ALGORITHMS:
        raise ConfigError(f"optimizer: got {name!r}; allowed: {', '.join(map(repr, ALGORITHMS))}")
    return ALGORITHMS[name]


def check_optimizer(cfg: RunConfig) -> None:
    """Refuse, before training, an unknown algorithm, bad options, or a model it cannot train."""
    cls = algorithm_class(cfg.optimizer)
    resolve_options(cls.name, cls.OPTIONS, cfg.optimizer_options)
    cls.check_config(cfg)


def make_algorithm(cfg: RunConfig, model: BlockNet) -> Algorithm:
    """The algorithm ``cfg`` names, with its options, training ``model``."""
    return algorithm_class(cfg.optimizer)(model, cfg.lr, **cfg.optimizer_options)


__all__ = ["ALGORITHMS", "Algorithm", "Option", "StepResult", "check_optimizer", "make_algorithm"]
