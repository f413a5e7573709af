"""The one interface every training algorithm follows, so the training loop never special-cases one.

``algo = make_algorithm(cfg, model)``; ``result = algo.step(x, y)``; ``algo.set_lr(lr)`` at any time.
Like ``torch.optim`` an algorithm owns its state and updates the model in place; unlike it, ``step``
takes the batch, because the papers' algorithms (ProxBP, SIBP, SA-SGD) need the forward pass itself.
Options are declared per algorithm (``OPTIONS``) and checked before training: unknown names and bad
values raise :class:`~bpviz.config.ConfigError` naming what is allowed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch

from ..config import ConfigError, RunConfig
from ..models import BlockNet


@dataclass(frozen=True)
class Option:
    """One hyperparameter of an algorithm: its default, type, allowed values or range, meaning."""

    default: Any
    help: str
    choices: tuple | None = None
    lo: float | None = None
    hi: float | None = None

    def check(self, algorithm: str, name: str, value: Any) -> Any:
        where = f"optimizer_options.{name} (optimizer {algorithm!r})"
        kind = type(self.default)
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if type(value) is not kind:
            raise ConfigError(f"{where}: got {value!r}; allowed: a {kind.__name__}")
        if self.choices is not None and value not in self.choices:
            raise ConfigError(f"{where}: got {value!r}; allowed: one of {', '.join(map(repr, self.choices))}")
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            if not math.isfinite(value) or (self.lo is not None and value < self.lo) or (self.hi is not None and value > self.hi):
                bounds = " and ".join(s for s in (self.lo is not None and f">= {self.lo}", self.hi is not None and f"<= {self.hi}") if s)
                raise ConfigError(f"{where}: got {value!r}; allowed: a finite number {bounds}".rstrip())
        return value


@dataclass
class StepResult:
    """What one step reports. ``loss`` is the batch loss *before* the step, kept as a detached
    tensor so that a step that records nothing causes no host-device synchronisation."""

    loss: torch.Tensor
    scalars: dict[str, torch.Tensor] = field(default_factory=dict)

    def finite(self) -> bool:
        """False once the loss is NaN or Inf (this synchronises; call it every few steps)."""
        return bool(torch.isfinite(self.loss))


class Algorithm:
    """Base class: holds the model and the step size; subclasses implement ``step``."""

    name: ClassVar[str]
    summary: ClassVar[str]
    OPTIONS: ClassVar[dict[str, Option]] = {}

    def __init__(self, model: BlockNet, lr: float, **options: Any):
        self.model = model
        self.options = resolve_options(self.name, self.OPTIONS, options)
        self._lr = check_lr(lr)

    @classmethod
    def check_config(cls, cfg: RunConfig) -> None:
        """Raise ConfigError when this algorithm cannot train the model ``cfg`` describes."""

    @property
    def lr(self) -> float:
        return self._lr

    def set_lr(self, lr: float) -> None:
        """Change the step size; it takes effect at the next ``step``."""
        self._lr = check_lr(lr)

    def step(self, x: torch.Tensor, y: torch.Tensor) -> StepResult:
        raise NotImplementedError

    def parameters_finite(self) -> bool:
        """One device sync for all parameters together."""
        return bool(torch.stack([torch.isfinite(p).all() for p in self.model.parameters()]).all())


def check_lr(lr: float) -> float:
    if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not math.isfinite(lr) or lr <= 0:
        raise ConfigError(f"lr: got {lr!r}; allowed: a finite number > 0")
    return float(lr)


def resolve_options(algorithm: str, schema: dict[str, Option], given: dict[str, Any]) -> dict[str, Any]:
    """Defaults filled in, every given option checked; unknown names list the allowed ones."""
    unknown = sorted(set(given) - set(schema))
    if unknown:
        allowed = ", ".join(schema) or "none"
        raise ConfigError(f"optimizer_options: unknown option(s) {unknown} for optimizer {algorithm!r}; allowed: {allowed}")
    return {name: opt.check(algorithm, name, given.get(name, opt.default)) for name, opt in schema.items()}
