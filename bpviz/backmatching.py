"""Back-matching propagation (Zhang, Chen, Liu 2018, §1.4 of research/seeds.md).

After a forward pass the top block gets the target ``z~_top = z_top - lr * dl/dz_top``. Going down,
block b owns the back-matching loss ``1/2 ||F_b(theta; z) - z~_b||^2``: minimising it over theta is the
*parameter* problem, over z the *input* problem, whose answer is the next target ``z~_{b-1}``.
One gradient step of size 1 on each, from the current point, is exactly one SGD step of size ``lr``
on the network loss; ``back_matching_step`` does that, so the equivalence can be checked and shown.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .models import BlockNet, network_loss


@dataclass
class BackMatching:
    """Per stage (the blocks, then the head): input z_{b-1}, output z_b and target z~_b."""

    inputs: list[torch.Tensor]
    outputs: list[torch.Tensor]
    targets: list[torch.Tensor]
    loss: float

    def residuals(self) -> list[torch.Tensor]:
        """z_b - z~_b, which equals lr * dl/dz_b when the targets come from unit steps."""
        return [out - tgt for out, tgt in zip(self.outputs, self.targets)]


def stages(model: BlockNet) -> list[nn.Module]:
    """The back-matching sequence: every block, then the output head."""
    return [*model.blocks, model.head]


def back_matching_loss(stage: nn.Module, z_in: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """1/2 ||F_b(theta_b; z_in) - target||^2 summed over the batch.

    As a function of the stage's parameters this is the parameter back-matching loss; as a function
    of ``z_in`` it is the input back-matching loss.
    """
    return 0.5 * (stage.local_forward(z_in) - target).pow(2).sum()


def _top_target(
    model: BlockNet, zs: list[torch.Tensor], y: torch.Tensor, lr: float
) -> tuple[torch.Tensor, torch.Tensor, float]:
    logits = model.head.local_forward(zs[-1]).detach().requires_grad_(True)
    loss = network_loss(logits, y)
    (grad,) = torch.autograd.grad(loss, logits)
    return logits.detach(), (logits - lr * grad).detach(), loss.item()


def _unit_step(stage: nn.Module, z_in: torch.Tensor, target: torch.Tensor, update: bool) -> torch.Tensor:
    """One unit gradient step on the input problem (returned) and, if ``update``, on the parameters."""
    z = z_in.detach().requires_grad_(True)
    params = [p for p in stage.parameters() if p.requires_grad]
    grads = torch.autograd.grad(back_matching_loss(stage, z, target), [z, *params])
    if update:
        with torch.no_grad():
            for p, g in zip(params, grads[1:]):
                p.sub_(g)
    return (z - grads[0]).detach()


def _propagate(model: BlockNet, x: torch.Tensor, y: torch.Tensor, lr: float, update: bool) -> BackMatching:
    if lr <= 0:
        raise ValueError(f"lr must be > 0, got {lr}")
    zs = model.block_inputs(x)
    seq = stages(model)
    logits, top, loss = _top_target(model, zs, y, lr)
    outputs = zs[1:] + [logits]
    targets: list[torch.Tensor] = [top]
    for b in range(len(seq) - 1, -1, -1):
        below = _unit_step(seq[b], zs[b], targets[0], update)
        if b > 0:
            targets.insert(0, below)
    return BackMatching(inputs=zs, outputs=outputs, targets=targets, loss=loss)


def back_matching_targets(model: BlockNet, x: torch.Tensor, y: torch.Tensor, lr: float) -> BackMatching:
    """Targets z~_b for every stage from unit steps on the input problems; parameters untouched."""
    return _propagate(model, x, y, lr, update=False)


def back_matching_step(model: BlockNet, x: torch.Tensor, y: torch.Tensor, lr: float) -> BackMatching:
    """Top-down, one unit gradient step on each stage's parameter and input back-matching losses.

    Both steps of a stage are taken from the same point (its old parameters), as in the
    proposition; the result equals one SGD step of size ``lr`` on ``network_loss``.
    """
    return _propagate(model, x, y, lr, update=True)
