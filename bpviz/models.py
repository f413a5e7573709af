"""Networks built from explicit blocks, so every block's local Hessian has a name and an index.

A block is ``F_b(W_b; z) = act(BN(affine(W_b, pool(z)))) + skip(z)`` with affine a Linear (MLP) or a
3x3 Conv2d (CNN, VGG13), and pool a 2x2 max-pool where a VGG stage starts (else the identity): the
pool opens the block rather than closing the one before, so a weight still multiplies the patches
of the block's own (pooled) input and its local Hessian keeps its per-channel structure.
``Block.local_forward`` is that map as a pure function of the block input and,
optionally, a substitute main weight, with BatchNorm in training mode (batch statistics) and no
running-statistics update: it is the function whose Jacobian defines the local Hessian and whose
back-matching loss BP minimises, and it has no side effects, so curvature code may call it freely.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from .config import RunConfig
from .device import torch_dtype

BN_EPS = 1e-5


def _sigmoid_grad(g: torch.Tensor) -> torch.Tensor:
    s = torch.sigmoid(g)
    return s * (1 - s)


#: activation name -> (function, derivative); the derivative gives the diagonal of the Jacobian.
ACTIVATIONS: dict[str, tuple[Callable[[torch.Tensor], torch.Tensor], Callable[[torch.Tensor], torch.Tensor]]] = {
    "tanh": (torch.tanh, lambda g: 1 - torch.tanh(g) ** 2),
    "relu": (torch.relu, lambda g: (g > 0).to(g.dtype)),
    "sigmoid": (torch.sigmoid, _sigmoid_grad),
    "linear": (lambda g: g, torch.ones_like),
}


class Block(nn.Module):
    """One block: [max-pool] -> affine -> [BatchNorm] -> activation, plus an optional skip connection.

    The skip is the identity when input and output shapes agree and a bias-free projection
    (Linear, or 1x1 Conv) otherwise.
    """

    kind: str  # "linear" or "conv"
    pool: bool = False  # a 2x2 max-pool of the input before the affine map (VGG's stage starts)

    def __init__(
        self, affine: nn.Module, bn: nn.Module | None, activation: str, projection: nn.Module | None, skip: bool
    ):
        super().__init__()
        self.affine = affine
        self.bn = bn
        self.activation = activation
        self.skip = skip
        self.projection = projection if skip else None

    def affine_input(self, z: torch.Tensor) -> torch.Tensor:
        """What the affine map multiplies: the block input, max-pooled 2x2 where the block pools."""
        return F.max_pool2d(z, 2) if self.pool else z

    @property
    def weight(self) -> torch.Tensor:
        """The main (Linear or Conv) weight: the parameter the weight local Hessian is taken in."""
        return self.affine.weight

    def affine_map(self, z: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def bn_dims(self) -> tuple[int, ...]:
        """The dimensions BatchNorm's statistics are taken over: the batch, and for conv the pixels."""
        return (0,) if self.kind == "linear" else (0, 2, 3)

    def channel_view(self, t: torch.Tensor) -> torch.Tensor:
        """A per-channel vector (BN's gamma or beta) shaped to broadcast over the affine output."""
        return t.view(1, -1) if self.kind == "linear" else t.view(1, -1, 1, 1)

    def normalize(self, g: torch.Tensor, eps: float = BN_EPS) -> tuple[torch.Tensor, torch.Tensor]:
        """BatchNorm with batch statistics: returns (normalised pre-activation y_hat, std s).

        ``eps`` replaces ``BN_EPS`` in the channels whose variance passes ``BN_EPS``: 0 is BN as the paper
        analyses it (the local-Hessian report's, ``bpviz.hessian_report.REPORT_BN_EPS``). A channel
        under it (constant on the batch, up to round-off) is not normalised by BN, has no eps -> 0
        limit and keeps ``BN_EPS``."""
        dims = self.bn_dims()
        mean = g.mean(dim=dims, keepdim=True)
        var = ((g - mean) ** 2).mean(dim=dims, keepdim=True)
        std = torch.where(var > BN_EPS, var + eps, var + BN_EPS).sqrt()
        return (g - mean) / std, std

    def pre_activation(
        self, z: torch.Tensor, weight: torch.Tensor | None = None, bn_eps: float = BN_EPS
    ) -> torch.Tensor:
        """The argument of the activation, with BN (training mode, batch statistics) applied."""
        g = self.affine_map(self.affine_input(z), self.weight if weight is None else weight)
        if self.bn is not None:
            y_hat, _ = self.normalize(g, bn_eps)
            g = y_hat * self.channel_view(self.bn.weight) + self.channel_view(self.bn.bias)
        return g

    def skip_map(self, z: torch.Tensor) -> torch.Tensor | None:
        if not self.skip:
            return None
        return z if self.projection is None else self.projection(z)

    def local_forward(
        self, z: torch.Tensor, weight: torch.Tensor | None = None, bn_eps: float = BN_EPS
    ) -> torch.Tensor:
        """F_b(W; z) with BN in training mode and no side effects (see module docstring)."""
        out = ACTIVATIONS[self.activation][0](self.pre_activation(z, weight, bn_eps))
        s = self.skip_map(z)
        return out if s is None else out + s

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        g = self.affine(self.affine_input(z))
        if self.bn is not None:
            g = self.bn(g)
        out = ACTIVATIONS[self.activation][0](g)
        s = self.skip_map(z)
        return out if s is None else out + s


class LinearBlock(Block):
    kind = "linear"

    def __init__(self, d_in: int, d_out: int, activation: str, batch_norm: bool, skip: bool):
        projection = nn.Linear(d_in, d_out, bias=False) if d_in != d_out else None
        bn = nn.BatchNorm1d(d_out, eps=BN_EPS) if batch_norm else None
        super().__init__(nn.Linear(d_in, d_out), bn, activation, projection, skip)

    def affine_map(self, z: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        return F.linear(z, weight, self.affine.bias)


class ConvBlock(Block):
    kind = "conv"

    def __init__(self, c_in: int, c_out: int, activation: str, batch_norm: bool, skip: bool, pool: bool = False):
        """``pool``: max-pool first; such a block's skip would need a strided projection, so it has none."""
        projection = nn.Conv2d(c_in, c_out, 1, bias=False) if c_in != c_out else None
        bn = nn.BatchNorm2d(c_out, eps=BN_EPS) if batch_norm else None
        super().__init__(nn.Conv2d(c_in, c_out, 3, padding=1), bn, activation, projection, skip and not pool)
        self.pool = pool

    def affine_map(self, z: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        return F.conv2d(z, weight, self.affine.bias, padding=1)


class Head(nn.Module):
    """The output layer: a Linear map; for a CNN after global average pooling (``pool="mean"``), for
    VGG13 after its last 2x2 max-pool, flattened (``pool="max"``)."""

    def __init__(self, d_in: int, n_outputs: int, pool: Literal["none", "mean", "max"]):
        super().__init__()
        self.pool = pool
        self.linear = nn.Linear(d_in, n_outputs)

    def local_forward(self, z: torch.Tensor) -> torch.Tensor:
        if self.pool == "mean":
            z = z.mean(dim=(2, 3))
        elif self.pool == "max":
            z = F.max_pool2d(z, 2).flatten(1)
        return self.linear(z)

    forward = local_forward


class BlockNet(nn.Module):
    """A stack of explicit ``blocks`` followed by an output ``head``."""

    def __init__(self, blocks: list[Block], head: Head, input_shape: tuple[int, ...], flatten: bool):
        super().__init__()
        self.blocks = nn.ModuleList(blocks)
        self.head = head
        self.input_shape = tuple(input_shape)
        self.flatten = flatten

    def prepare(self, x: torch.Tensor) -> torch.Tensor:
        """Check the input's shape and bring it to the first block's layout."""
        if tuple(x.shape[1:]) != self.input_shape:
            raise ValueError(
                f"input has shape {tuple(x.shape)}; this model expects (batch, {', '.join(map(str, self.input_shape))})"
            )
        return x.flatten(1) if self.flatten else x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.prepare(x)
        for block in self.blocks:
            z = block(z)
        return self.head(z)

    @torch.no_grad()
    def block_inputs(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Z_0 .. Z_B: the input of every block and, last, the head's input (side-effect free)."""
        zs = [self.prepare(x)]
        for block in self.blocks:
            zs.append(block.local_forward(zs[-1]))
        return zs


def init_weight(weight: torch.Tensor, cfg: RunConfig, generator: torch.Generator) -> None:
    """Apply the configured init to one Linear/Conv weight (fan-in counts the kernel)."""
    fan_out, fan_in = weight.shape[0], weight[0].numel()
    with torch.no_grad():
        if cfg.init == "gaussian":
            weight.normal_(0.0, cfg.init_std, generator=generator)
        elif cfg.init == "xavier":
            weight.normal_(0.0, math.sqrt(2.0 / (fan_in + fan_out)), generator=generator)
        elif cfg.init == "kaiming":
            gain = nn.init.calculate_gain(cfg.activation)
            weight.normal_(0.0, gain / math.sqrt(fan_in), generator=generator)
        else:  # orthogonal: W^T W = I (or W W^T = I), the paper's ideal input Hessian
            a = torch.randn(max(fan_out, fan_in), min(fan_out, fan_in), generator=generator, dtype=torch.float64)
            q, r = torch.linalg.qr(a)
            q = q * torch.sign(torch.diagonal(r))  # Haar-distributed
            q = q if fan_out >= fan_in else q.T
            weight.copy_(q.reshape(weight.shape).to(weight.dtype))


def build_model(cfg: RunConfig, input_shape: tuple[int, ...], n_outputs: int) -> BlockNet:
    """The network ``cfg`` describes, initialised deterministically from ``cfg.seed``."""
    generator = torch.Generator().manual_seed(cfg.seed)
    if cfg.arch == "vgg13":
        blocks, head = _vgg13(cfg, input_shape, n_outputs)
    elif cfg.arch == "cnn":
        if len(input_shape) != 3:
            raise ValueError(f"arch 'cnn' needs image input (C, H, W); got input shape {tuple(input_shape)}")
        widths = [input_shape[0]] + [cfg.width] * cfg.depth
        blocks: list[Block] = [
            ConvBlock(widths[i], widths[i + 1], cfg.activation, cfg.batch_norm, cfg.skip) for i in range(cfg.depth)
        ]
        head = Head(cfg.width, n_outputs, pool="mean")
    else:
        widths = [math.prod(input_shape)] + (cfg.widths or [cfg.width] * cfg.depth)
        blocks = [
            LinearBlock(widths[i], widths[i + 1], cfg.activation, cfg.batch_norm, cfg.skip) for i in range(cfg.depth)
        ]
        head = Head(widths[-1], n_outputs, pool="none")
    model = BlockNet(blocks, head, input_shape, flatten=cfg.arch == "mlp")
    model.to(torch_dtype(cfg.dtype))
    for block in model.blocks:
        init_weight(block.weight, cfg, generator)
        init_bias(block.affine.bias, cfg, generator)
        if block.projection is not None:
            init_weight(block.projection.weight, cfg, generator)
    init_weight(model.head.linear.weight, cfg, generator)
    init_bias(model.head.linear.bias, cfg, generator)
    return model


#: VGG13 (Simonyan & Zisserman 2015, configuration B) as a CIFAR network: ten 3x3 conv blocks in five
#: stages of two, widths in multiples of the first (64 in the standard net: 64, 128, 256, 512, 512), a
#: 2x2 max-pool opening stages 2-5 and closing stage 5, then one Linear classifier on the 512 features
#: left of a 32x32 image (the usual CIFAR head, e.g. kuangliu/pytorch-cifar's; the paper on local
#: Hessians says only "VGG13 with BN", so the head is our choice). 9.4M parameters with BN at width 64.
VGG13_WIDTHS = (1, 1, 2, 2, 4, 4, 8, 8, 8, 8)
VGG13_POOLED = (2, 4, 6, 8)  # blocks that open a stage with a max-pool


def _vgg13(cfg: RunConfig, input_shape: tuple[int, ...], n_outputs: int) -> tuple[list[Block], Head]:
    if len(input_shape) != 3 or input_shape[1] % 32 or input_shape[2] % 32:
        raise ValueError(
            f"arch 'vgg13' pools five times by 2: it needs images (C, H, W) with H and W multiples of 32; "
            f"got input shape {tuple(input_shape)}"
        )
    widths = [input_shape[0]] + [cfg.width * k for k in VGG13_WIDTHS]
    blocks: list[Block] = [
        ConvBlock(
            widths[i],
            widths[i + 1],
            cfg.activation,
            cfg.batch_norm,
            cfg.skip and widths[i] == widths[i + 1],
            pool=i in VGG13_POOLED,
        )
        for i in range(len(VGG13_WIDTHS))
    ]
    features = widths[-1] * (input_shape[1] // 32) * (input_shape[2] // 32)
    return blocks, Head(features, n_outputs, pool="max")


def init_bias(bias: torch.Tensor, cfg: RunConfig, generator: torch.Generator) -> None:
    with torch.no_grad():
        if cfg.bias_init == "gaussian":
            bias.normal_(0.0, cfg.init_std, generator=generator)
        else:
            bias.zero_()


def network_loss(output: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy for integer class labels, mean squared error for float targets."""
    if y.dtype in (torch.int64, torch.int32):
        return F.cross_entropy(output, y)
    return F.mse_loss(output, y)
