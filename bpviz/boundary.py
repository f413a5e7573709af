"""The decision boundary of a classifier on a 2-D input plane, as a small JSON-friendly payload.

The network is evaluated on a regular grid over the training inputs (plus a margin) so a plot can
colour the plane by the predicted class and its confidence, with a fixed subsample of the training
points on top: watching the regions bend around the spirals is the most direct picture of what
training does. The payload's size depends on ``resolution`` and ``max_points`` only, never on the
dataset, so it can be sent to a page after every evaluation.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import nn

from .data import Dataset

if TYPE_CHECKING:  # for the annotation only: train.py imports the data and models this module uses
    from .train import Trainer

#: decimals kept for coordinates (inputs are standardised: ~1e-4 of a standard deviation)
_COORD_DIGITS = 4


def has_boundary(dataset: Dataset) -> bool:
    """Whether a decision boundary can be drawn: classification on 2-D inputs (the toys)."""
    return dataset.task == "classification" and tuple(dataset.input_shape) == (2,)


def point_subsample(y: torch.Tensor, max_points: int) -> torch.Tensor:
    """Indices of at most ``max_points`` samples, the same every call: evenly spread over the
    samples sorted by class (stably), so each class keeps its share and a few points per class
    spread over its members (the toys are shuffled, so any even spread is a fair sample)."""
    n = y.shape[0]
    by_class = torch.argsort(y.cpu(), stable=True)
    if n <= max_points:
        return by_class
    return by_class[(torch.arange(max_points) * n) // max_points]


def _axis(values: torch.Tensor, resolution: int, margin: float) -> list[float]:
    """``resolution`` evenly spaced coordinates over the values' range widened by ``margin`` of it
    each side (a range of 1 around a single value), rounded as the payload sends them."""
    lo, hi = values.min().item(), values.max().item()
    pad = margin * (hi - lo) if hi > lo else 0.5
    axis = torch.linspace(lo - pad, hi + pad, resolution, dtype=torch.float64)
    return [round(v, _COORD_DIGITS) for v in axis.tolist()]


@torch.no_grad()
def decision_boundary(
    model: nn.Module,
    x_train: torch.Tensor,
    y_train: torch.Tensor,
    n_classes: int,
    step: int = 0,
    resolution: int = 48,
    max_points: int = 300,
    margin: float = 0.1,
) -> dict:
    """The model's predicted class and confidence over a grid covering ``x_train`` (N, 2).

    BatchNorm runs in eval mode (running statistics, as the evaluations use); every module's mode
    is restored afterwards. The grid is evaluated in the model's dtype and on its device, at the
    (rounded) coordinates the payload sends, so what is drawn is what was computed. Payload::

        {"step": int, "n_classes": int,
         "x": [resolution floats], "y": [resolution floats],
         "predicted": resolution x resolution ints (row i is y[i], column j is x[j]): argmax class,
         "confidence": resolution x resolution floats (3 decimals): softmax probability of that class,
         "points": {"x": [...], "y": [...], "label": [...]}}  # at most max_points (point_subsample)

    Worst case 2·resolution² + 2·resolution + 3·max_points + 2 values: 5606 at the defaults.
    """
    if resolution < 2:
        raise ValueError(f"resolution: got {resolution}; need at least 2 grid points per axis")
    xs, ys = _axis(x_train[:, 0], resolution, margin), _axis(x_train[:, 1], resolution, margin)
    weight = next(model.parameters())
    grid_y, grid_x = torch.meshgrid(
        torch.tensor(ys, dtype=weight.dtype, device=weight.device),
        torch.tensor(xs, dtype=weight.dtype, device=weight.device),
        indexing="ij",
    )
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        logits = model(torch.stack([grid_x.flatten(), grid_y.flatten()], dim=1))
    finally:
        for module, training in modes:
            module.training = training
    confidence, predicted = torch.softmax(logits.double(), dim=1).max(dim=1)
    idx = point_subsample(y_train, max_points)
    points = x_train.detach().cpu()[idx].double()
    return {
        "step": int(step),
        "n_classes": int(n_classes),
        "x": xs,
        "y": ys,
        "predicted": predicted.view(resolution, resolution).tolist(),
        "confidence": confidence.view(resolution, resolution).round(decimals=3).tolist(),
        "points": {
            "x": points[:, 0].round(decimals=_COORD_DIGITS).tolist(),
            "y": points[:, 1].round(decimals=_COORD_DIGITS).tolist(),
            "label": y_train.cpu()[idx].tolist(),
        },
    }


def live_boundary(trainer: Trainer) -> dict | None:
    """The boundary of a trainer's network now, None unless its data are 2-D classification. A
    48x48 grid costs 2 ms on the default 4x32 tanh MLP, 7 ms on a 16x32 BN MLP and 27 ms on 4x256
    (one CPU thread, measured; a training step of those is 2-3 ms), so a live session makes one at
    every evaluation and at setup."""
    if not has_boundary(trainer.data):
        return None
    data = trainer.data
    return decision_boundary(trainer.model, trainer.x_train, trainer.y_train, data.n_outputs, step=trainer.step_count)
