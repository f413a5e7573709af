"""The standard CIFAR augmentation, on a whole batch at once on its device: each image shifted by a
random crop of it padded by ``padding`` pixels on every side, and mirrored left-right with
probability 1/2 (as torchvision's ``RandomCrop(32, padding=4)`` and ``RandomHorizontalFlip()``).

The draws come from a CPU generator (the trainer's batch sampler, so a checkpoint holds them and a
resumed run draws the same), and the crop is one gather: no per-image Python loop, no device sync.
Images are standardised before they get here, so the padding's zeros are the training set's mean
pixel (torchvision pads the raw image with black, which standardisation then shifts).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

PADDING = 4


def random_crop_flip(x: torch.Tensor, generator: torch.Generator, padding: int = PADDING) -> torch.Tensor:
    """x (n, C, H, W) -> the same shape: every image cropped from its padded self and maybe flipped."""
    n, _, h, w = x.shape
    offsets = torch.randint(0, 2 * padding + 1, (2, n), generator=generator)
    flip = torch.rand(n, generator=generator) < 0.5
    rows = offsets[0, :, None] + torch.arange(h)  # (n, H): the padded rows each image keeps
    cols = offsets[1, :, None] + torch.arange(w)
    cols = torch.where(flip[:, None], cols.flip(1), cols)  # a mirrored image reads its columns backwards
    rows, cols = rows.to(x.device, non_blocking=True), cols.to(x.device, non_blocking=True)
    padded = F.pad(x, (padding,) * 4)
    batch = torch.arange(n, device=x.device)[:, None, None]
    # advanced indices around a slice: the indexed dimensions come first, (n, H, W, C)
    return padded[batch, :, rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2).contiguous()
