"""Baselines through ``torch.optim``: plain SGD (momentum, Nesterov, weight decay) and Adam."""

from __future__ import annotations

import torch

from ..models import network_loss
from ..options import ALGORITHM_OPTIONS
from .base import Algorithm, StepResult


class TorchOptimizer(Algorithm):
    """An algorithm that is one ``torch.optim`` optimizer on the network loss."""

    def __init__(self, model, lr, **options):
        super().__init__(model, lr, **options)
        self.optimizer = self.make_optimizer()

    def make_optimizer(self) -> torch.optim.Optimizer:
        raise NotImplementedError

    def set_lr(self, lr: float) -> None:
        super().set_lr(lr)
        for group in self.optimizer.param_groups:
            group["lr"] = self.lr

    def step(self, x: torch.Tensor, y: torch.Tensor) -> StepResult:
        loss = network_loss(self.model(x), y)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.amend_gradients()
        self.optimizer.step()
        return StepResult(loss=loss.detach(), scalars=self.scalars())

    def amend_gradients(self) -> None:
        """Hook between backward and the optimizer step (SA-SGD rescales gradients here)."""

    def scalars(self) -> dict[str, torch.Tensor]:
        return {}


class SGD(TorchOptimizer):
    name = "sgd"
    summary = "stochastic gradient descent (torch.optim.SGD)"
    OPTIONS = ALGORITHM_OPTIONS["sgd"]

    def make_optimizer(self) -> torch.optim.Optimizer:
        o = self.options
        return torch.optim.SGD(
            self.model.parameters(),
            lr=self.lr,
            momentum=o["momentum"],
            nesterov=o["nesterov"] and o["momentum"] > 0,
            weight_decay=o["weight_decay"],
        )


class Adam(TorchOptimizer):
    name = "adam"
    summary = "Adam (torch.optim.Adam)"
    OPTIONS = ALGORITHM_OPTIONS["adam"]

    def make_optimizer(self) -> torch.optim.Optimizer:
        o = self.options
        return torch.optim.Adam(
            self.model.parameters(),
            lr=self.lr,
            betas=(o["beta1"], o["beta2"]),
            eps=o["eps"],
            weight_decay=o["weight_decay"],
        )
