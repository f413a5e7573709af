"""Scale-amended SGD (SA-SGD), Zhang, Chen, Liu (NeurIPS 2018), as reconstructed in research/seeds.md §1.7.

Solving every back-matching problem with one Newton step instead of one unit gradient step, and
replacing each local Hessian by a scalar times the identity (``H_W^b ~ beta_b I``, ``H_z^b ~ alpha_b I``,
the scalar being trace / dimension), turns BP into SGD with a per-block learning rate

    eta_b = eta / (beta_b * prod_{j > b} alpha_j)

over the stages b (the blocks, then the output head). What is from the paper: a scalar approximation
of the local Hessian, a block-wise learning-rate scaling, networks with batch norm. What is our
reconstruction (the paper's constants were not retrievable): the trace/dimension scalar, the options
below, and the approximations that keep it as cheap as an SGD step:

* ``beta`` is tr(H_W)/dim(W) of the block's weight, from the block input's (im2col) row norms and the
  activation slope; with BN the input is centred (BN's rank-one scale projection is dropped);
* ``alpha`` is tr(H_z)/dim(z) with BN's batch statistics held constant (exact without BN);
* every parameter tensor gets its own beta (the weight's as above; bias, BN gamma and beta and the
  skip projection from their own Jacobians), times the alphas above it: sharing the weight's beta
  with BN's gamma would scale gamma's step by 1/gamma^2 and blow it up as gamma nears 0.

Options: ``granularity`` per block or per channel (output unit), ``statistics`` from the batch or a
running EMA, normalising the scales to geometric mean 1 so ``lr`` stays comparable to SGD's, and
``refresh_every`` (the scalars drift slowly; recomputing them every step would cost more than the
SGD step itself on small nets).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..models import ACTIVATIONS, Block, Head
from .base import Option
from .sgd import SGD


class SASGD(SGD):
    name = "sa_sgd"
    summary = "scale-amended SGD: per-block learning rates from scalar local Hessians (reconstructed)"
    OPTIONS = {
        **SGD.OPTIONS,
        "granularity": Option("block", "one scale per block, or one per output channel", choices=("block", "channel")),
        "statistics": Option("batch", "scalars from this batch, or a running EMA of them", choices=("batch", "running")),
        "ema": Option(0.9, "EMA momentum when statistics='running'", lo=0.0, hi=1.0),
        "normalize": Option(True, "divide the scales by their geometric mean, so lr keeps SGD's meaning"),
        "refresh_every": Option(20, "recompute the scalars every N steps (they drift slowly); reuse them between", lo=1),
    }

    def __init__(self, model, lr, **options):
        super().__init__(model, lr, **options)
        self.stages: list[nn.Module] = [*model.blocks, model.head]
        self._captured: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
        self._running: list[tuple[dict[nn.Parameter, torch.Tensor], torch.Tensor]] | None = None
        self._scales: dict[nn.Parameter, torch.Tensor] = {}
        self._views: list[torch.Tensor] = []  # the scales shaped to broadcast over each gradient
        self._steps = 0

    def step(self, x: torch.Tensor, y: torch.Tensor):
        """An SGD step on amended gradients; on refresh steps, hooks capture each stage's input
        and affine output during the forward pass (only then: hooks cost time on small nets)."""
        handles = []
        if self._steps % self.options["refresh_every"] == 0:
            for i, stage in enumerate(self.stages):
                affine = stage.affine if isinstance(stage, Block) else stage.linear
                handles.append(affine.register_forward_hook(self._capture(i)))
        try:
            return super().step(x, y)
        finally:
            for handle in handles:
                handle.remove()

    def _capture(self, i: int):
        def hook(module: nn.Module, inputs: tuple[torch.Tensor], output: torch.Tensor) -> None:
            self._captured[i] = (inputs[0].detach(), output.detach())
        return hook

    # --- scalar local Hessians ----------------------------------------------------------------
    @staticmethod
    def _row_norms(stage: nn.Module, z: torch.Tensor, centred: bool) -> torch.Tensor:
        """|P_N|^2 for each row N the weight multiplies: (n,) for Linear, (n, H, W) for conv patches."""
        if z.dim() == 2:
            return (z - z.mean(0) if centred else z).pow(2).sum(1)
        c_in = z.shape[1]
        ones = z.new_ones(1, c_in, 3, 3)
        norms = F.conv2d(z.pow(2), ones, padding=1)[:, 0]
        if centred:  # |p - p_mean|^2 = |p|^2 - 2 p.p_mean + |p_mean|^2
            patches = F.unfold(z, 3, padding=1)  # (n, C*9, HW)
            mean = patches.mean(dim=(0, 2))
            norms = norms - 2 * F.conv2d(z, mean.view(1, c_in, 3, 3), padding=1)[:, 0] + mean.pow(2).sum()
        return norms

    @staticmethod
    def _slopes(block: Block, g: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]:
        """Activation slope at the activation's input, BN's y_hat (or None), and dF/dg (slope, times
        gamma/s with BN); all shaped like the affine output g."""
        act_grad = ACTIVATIONS[block.activation][1]
        if block.bn is None:
            slope = act_grad(g)
            return slope, None, slope
        y_hat, std = block.normalize(g)
        gamma = block._channel_view(block.bn.weight.detach())
        slope = act_grad(y_hat * gamma + block._channel_view(block.bn.bias.detach()))
        return slope, y_hat, slope * gamma / std

    def _block_scalars(self, block: Block, z: torch.Tensor, g: torch.Tensor) -> tuple[dict[nn.Parameter, torch.Tensor], torch.Tensor]:
        """Per parameter tensor its beta (one per output unit), and the block's alpha."""
        slope, y_hat, c = self._slopes(block, g)
        c2 = c.pow(2)  # (n, m) or (n, m, H, W)
        W = block.weight.detach()
        m, fan_in = W.shape[0], W[0].numel()
        dims = (0, *range(2, g.dim()))

        def per_unit(t: torch.Tensor) -> torch.Tensor:
            return t.sum(dim=dims)

        rows = self._row_norms(block, z, centred=block.bn is not None)
        betas = {block.affine.weight: per_unit(c2 * rows.unsqueeze(1)) / fan_in, block.affine.bias: per_unit(c2)}
        if block.bn is not None:
            betas[block.bn.weight] = per_unit((slope * y_hat).pow(2))
            betas[block.bn.bias] = per_unit(slope.pow(2))
        if block.projection is not None:
            proj_rows = self._row_norms(block, z, centred=False) if z.dim() == 2 else z.pow(2).sum(1)
            betas[block.projection.weight] = (proj_rows.sum() / z.shape[1]).expand(m)
        # alpha: sum_i |diag(c_i) W + S|_F^2 / (n * dim z)
        view = (1, m) + (1,) * (g.dim() - 2)
        trace = (c2 * W.flatten(1).pow(2).sum(1).view(view)).sum()
        if block.skip:
            centre = W if W.dim() == 2 else W[:, :, 1, 1]
            if block.projection is None:
                cross, s_norm = torch.diagonal(centre), float(z[0].numel())
            else:
                P = block.projection.weight.detach().flatten(1)
                cross, s_norm = (centre * P).sum(1), P.pow(2).sum() * (z[0].numel() // z.shape[1])
            trace = trace + 2 * (c * cross.view(view)).sum() + z.shape[0] * s_norm
        return betas, trace / z.numel()

    def _head_scalars(self, head: Head, z: torch.Tensor, positions: int) -> tuple[dict[nn.Parameter, torch.Tensor], torch.Tensor]:
        """The head's betas and alpha. Its hook sees the pooled input of a CNN; pooling over
        ``positions`` places makes the Jacobian w.r.t. the unpooled map 1/positions as large."""
        k = head.linear.weight.shape[0]
        betas = {head.linear.weight: (z.pow(2).sum() / z.shape[1]).expand(k),
                 head.linear.bias: z.new_full((k,), float(z.shape[0]))}
        return betas, head.linear.weight.detach().pow(2).sum() / z.shape[1] / positions**2

    def _scalars(self) -> list[tuple[dict[nn.Parameter, torch.Tensor], torch.Tensor]]:
        out = []
        for i, stage in enumerate(self.stages):
            z, g = self._captured[i]
            if isinstance(stage, Head):
                positions = math.prod(self._captured[i - 1][1].shape[2:]) if stage.pool else 1
                out.append(self._head_scalars(stage, z, positions))
            else:
                out.append(self._block_scalars(stage, z, g))
        if self.options["statistics"] == "running":
            if self._running is not None:
                m = self.options["ema"]
                out = [({p: m * rb[p] + (1 - m) * b for p, b in betas.items()}, m * ra + (1 - m) * a)
                       for (rb, ra), (betas, a) in zip(self._running, out)]
            self._running = out
        return out

    def parameter_scales(self) -> dict[nn.Parameter, torch.Tensor]:
        """Per parameter tensor, 1 / (its beta * prod of the alphas above): a scalar, or one per channel."""
        scalars = self._scalars()
        tiny = torch.finfo(scalars[0][1].dtype).tiny
        scales: dict[nn.Parameter, torch.Tensor] = {}
        above = torch.ones((), dtype=scalars[0][1].dtype, device=scalars[0][1].device)
        for betas, alpha in reversed(scalars):
            for p, beta in betas.items():
                if self.options["granularity"] == "block":
                    beta = beta.mean()
                scales[p] = 1.0 / (beta.clamp_min(tiny) * above)
            above = above * alpha.clamp_min(tiny)
        if self.options["normalize"]:
            mean = torch.cat([s.reshape(-1).log() for s in scales.values()]).mean().exp()
            scales = {p: s / mean for p, s in scales.items()}
        return scales

    # --- the step -----------------------------------------------------------------------------
    def amend_gradients(self) -> None:
        if self._steps % self.options["refresh_every"] == 0:
            self._scales = self.parameter_scales()
            self._views = [s.view(-1, *([1] * (p.dim() - 1))) if s.dim() else s for p, s in self._scales.items()]
        self._steps += 1
        grads = [p.grad for p in self._scales]
        if all(g is not None for g in grads):
            torch._foreach_mul_(grads, self._views)
        else:
            for g, view in zip(grads, self._views):
                if g is not None:
                    g.mul_(view)

    def scalars(self) -> dict[str, torch.Tensor]:
        """The weight scale of every block, and the head's: what the dashboard plots."""
        weights = [b.weight for b in self.model.blocks] + [self.model.head.linear.weight]
        names = [f"scale/{b}" for b in range(len(weights) - 1)] + ["scale/head"]
        return {name: self._scales[w].detach().mean() for name, w in zip(names, weights)}
