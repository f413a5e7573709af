"""The one interface every training algorithm follows, so the training loop never special-cases one.

``algo = make_algorithm(cfg, model)``; ``result = algo.step(x, y)``; ``algo.set_lr(lr)`` at any time.
Like ``torch.optim`` an algorithm owns its state and updates the model in place; unlike it, ``step``
takes the batch, because the papers' algorithms (ProxBP, SIBP, SA-SGD) need the forward pass itself.
Options are declared per algorithm (``OPTIONS``, taken from :mod:`bpviz.options`, which a config is
checked against when it is made): unknown names and bad values raise :class:`~bpviz.config.ConfigError`
naming what is allowed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch

from ..models import BlockNet
from ..options import ConfigError, Option, resolve_options


@dataclass
class StepResult:
    """What one step reports. ``loss`` is the batch loss *before* the step, kept as a detached
    tensor so that a step that records nothing causes no host-device synchronisation."""

    loss: torch.Tensor
    scalars: dict[str, torch.Tensor] = field(default_factory=dict)
    #: what the training loop read from the device after this step, in its one sync (``batch_loss``
    #: at least; empty at the steps it read nothing): hooks use these instead of reading again
    numbers: dict[str, float] = field(default_factory=dict)

    def finite(self) -> bool:
        """False once the loss is NaN or Inf (this synchronises; call it every few steps)."""
        return bool(torch.isfinite(self.loss))


class Algorithm:
    """Base class: holds the model and the step size; subclasses implement ``step``."""

    name: ClassVar[str]
    summary: ClassVar[str]
    OPTIONS: ClassVar[dict[str, Option]] = {}
    #: the names (glossary patterns, see bpviz.metrics) that ``step`` may report in ``StepResult.scalars``
    SCALARS: ClassVar[tuple[str, ...]] = ()
    #: the torch.optim optimizer an algorithm steps with, if any (its state is part of a checkpoint)
    optimizer: torch.optim.Optimizer | None = None

    def __init__(self, model: BlockNet, lr: float, **options: Any):
        self.model = model
        self.options = resolve_options(self.name, self.OPTIONS, options)
        self._lr = check_lr(lr)

    @property
    def lr(self) -> float:
        return self._lr

    def set_lr(self, lr: float) -> None:
        """Change the step size; it takes effect at the next ``step``."""
        self._lr = check_lr(lr)

    def step(self, x: torch.Tensor, y: torch.Tensor) -> StepResult:
        raise NotImplementedError

    def state_dict(self) -> dict[str, Any]:
        """What continuing this algorithm exactly needs besides the model (as ``torch.optim``'s):
        the step size and the optimizer's state (momentum buffers, Adam's moments)."""
        state: dict[str, Any] = {"lr": self._lr}
        if self.optimizer is not None:
            state["optimizer"] = self.optimizer.state_dict()
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.set_lr(state["lr"])
        if self.optimizer is not None:
            self.optimizer.load_state_dict(state["optimizer"])

    def parameters_finite(self) -> bool:
        """One device sync for all parameters together."""
        return bool(torch.stack([torch.isfinite(p).all() for p in self.model.parameters()]).all())


def check_lr(lr: float) -> float:
    if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not math.isfinite(lr) or lr <= 0:
        raise ConfigError(f"lr: got {lr!r}; allowed: a finite number > 0")
    return float(lr)
