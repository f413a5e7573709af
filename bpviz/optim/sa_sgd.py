"""Scale-amended SGD (SA-SGD), Zhang, Chen, Liu (NeurIPS 2018), as reconstructed in research/seeds.md §1.7.

The paper's principle: replace each block's local Hessian by a scalar, which turns BP into SGD with a
block-wise learning rate, and apply it to networks with batch norm. Its exact scalar, which tensors it
amends and its constants were not retrievable, so every variant below (option ``amend``) is ours:

* ``bn_weights`` (default; the "likely form" for BN networks in seeds.md §1.7): a BN block's weight
  Hessian scales as gamma_j^2 / sigma_j^2, so only the Linear/Conv weights followed by BN are amended,
  by ``sigma_j^2 / gamma_j^2`` (sigma^2: the variance of the BN input plus BN's eps; gamma: BN's
  weight). That cancels the 1/|w|^2 shrinkage of a scale-invariant weight's effective step.
  Everything else (biases, gamma, beta, skip projections, blocks without BN, the head) keeps eta;
  on a network without BN this is plain SGD.
* ``all``: every tensor, from the unrolled derivation. One Newton step per back-matching problem with
  ``H_W^b ~ beta_b I``, ``H_z^b ~ alpha_b I`` (trace / dimension) gives ``eta_b = eta / (beta_b *
  prod_{j > b} alpha_j)`` over the blocks and the head. ``beta`` of a weight comes from the block
  input's (im2col) row norms and the activation slope (with BN the input is centred and BN's rank-one
  scale projection dropped); bias, gamma, beta and the skip projection get their own beta from their
  own Jacobians (sharing the weight's would scale gamma's step by 1/gamma^2); ``alpha`` holds BN's
  batch statistics constant (exact without BN).
* ``head``: an ablation; only the head's tensors get their ``all`` scales, everything else keeps eta.

Options: ``granularity`` per block (the mean over channels) or per channel, ``statistics`` from the
batch or a running EMA (of sigma^2 for ``bn_weights``, of the scalars for ``all``), ``normalize``
(divide the amended scales by their geometric mean, so ``lr`` stays comparable to SGD's; ``head``
keeps the head's normalised ``all`` scale), and ``refresh_every`` (the scalars drift slowly;
recomputing them every step would cost more than the SGD step itself on small nets).
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..metrics import scale_name
from ..models import ACTIVATIONS, Block, Head
from ..options import ALGORITHM_OPTIONS
from .sgd import SGD


class SASGD(SGD):
    name = "sa_sgd"
    summary = "scale-amended SGD: per-block learning rates from scalar local Hessians (reconstructed)"
    OPTIONS = ALGORITHM_OPTIONS["sa_sgd"]
    SCALARS = ("scale/{block}", "scale/head")

    def __init__(self, model, lr, **options):
        super().__init__(model, lr, **options)
        self.stages: list[nn.Module] = [*model.blocks, model.head]
        self._captured: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
        self._running: list[tuple[dict[nn.Parameter, torch.Tensor], torch.Tensor]] | None = None
        self._running_var: dict[int, torch.Tensor] = {}  # bn_weights: EMA of sigma^2 per BN block
        self._scales: dict[nn.Parameter, torch.Tensor] = {}
        self._views: list[torch.Tensor] = []  # the scales shaped to broadcast over each gradient
        self._steps = 0

    def step(self, x: torch.Tensor, y: torch.Tensor):
        """An SGD step on amended gradients; on refresh steps, hooks capture each stage's input
        and affine output during the forward pass (only then: hooks cost time on small nets)."""
        handles = []
        if self._steps % self.options["refresh_every"] == 0:
            bn_only = self.options["amend"] == "bn_weights"
            for i, stage in enumerate(self.stages):
                if bn_only and not (isinstance(stage, Block) and stage.bn is not None):
                    continue
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
        gamma = block.channel_view(block.bn.weight.detach())
        slope = act_grad(y_hat * gamma + block.channel_view(block.bn.bias.detach()))
        return slope, y_hat, slope * gamma / std

    def _block_scalars(
        self, block: Block, z: torch.Tensor, g: torch.Tensor
    ) -> tuple[dict[nn.Parameter, torch.Tensor], torch.Tensor]:
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

    def _head_scalars(
        self, head: Head, z: torch.Tensor, shrink: int
    ) -> tuple[dict[nn.Parameter, torch.Tensor], torch.Tensor]:
        """The head's betas and alpha. Its hook sees the pooled input; alpha is per entry of the
        unpooled map, ``shrink`` times fewer than the pooled (see :func:`pool_shrink`)."""
        k = head.linear.weight.shape[0]
        betas = {
            head.linear.weight: (z.pow(2).sum() / z.shape[1]).expand(k),
            head.linear.bias: z.new_full((k,), float(z.shape[0])),
        }
        return betas, head.linear.weight.detach().pow(2).sum() / z.shape[1] / shrink

    def _scalars(self) -> list[tuple[dict[nn.Parameter, torch.Tensor], torch.Tensor]]:
        out = []
        for i, stage in enumerate(self.stages):
            z, g = self._captured[i]
            if isinstance(stage, Head):
                positions = math.prod(self._captured[i - 1][1].shape[2:]) if stage.pool == "mean" else 1
                out.append(self._head_scalars(stage, z, pool_shrink(stage.pool, positions)))
            else:
                betas, alpha = self._block_scalars(stage, z, g)
                out.append((betas, alpha / pool_shrink("max" if stage.pool else "none")))
        if self.options["statistics"] == "running":
            if self._running is not None:
                m = self.options["ema"]
                out = [
                    ({p: m * rb[p] + (1 - m) * b for p, b in betas.items()}, m * ra + (1 - m) * a)
                    for (rb, ra), (betas, a) in zip(self._running, out)
                ]
            self._running = out
        return out

    def _hessian_scales(self) -> dict[nn.Parameter, torch.Tensor]:
        """``all``: per parameter tensor, 1 / (its beta * prod of the alphas above)."""
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
        return self._normalized(scales)

    def _bn_weight_scales(self) -> dict[nn.Parameter, torch.Tensor]:
        """``bn_weights``: sigma_j^2 / gamma_j^2 for the weight of every block with BN."""
        scales: dict[nn.Parameter, torch.Tensor] = {}
        m = self.options["ema"]
        for i, block in enumerate(self.model.blocks):
            if block.bn is None:
                continue
            g = self._captured[i][1]
            var = g.var(dim=block.bn_dims(), correction=0) + block.bn.eps
            if self.options["statistics"] == "running" and i in self._running_var:
                var = m * self._running_var[i] + (1 - m) * var
            self._running_var[i] = var
            gamma2 = block.bn.weight.detach().pow(2)
            ratio = var / gamma2.clamp_min(torch.finfo(gamma2.dtype).tiny)
            scales[block.weight] = ratio.mean() if self.options["granularity"] == "block" else ratio
        return self._normalized(scales)

    def _normalized(self, scales: dict[nn.Parameter, torch.Tensor]) -> dict[nn.Parameter, torch.Tensor]:
        """Divided by their geometric mean over every entry (block or channel) when ``normalize`` is on."""
        if not self.options["normalize"] or not scales:
            return scales
        mean = torch.cat([s.reshape(-1).log() for s in scales.values()]).mean().exp()
        return {p: s / mean for p, s in scales.items()}

    def parameter_scales(self) -> dict[nn.Parameter, torch.Tensor]:
        """The gradient factor of every amended tensor (a scalar, or one per channel); tensors not in
        the dict keep the plain learning rate."""
        amend = self.options["amend"]
        if amend == "bn_weights":
            return self._bn_weight_scales()
        scales = self._hessian_scales()
        if amend == "head":
            head = self.model.head.linear
            return {head.weight: scales[head.weight], head.bias: scales[head.bias]}
        return scales

    # --- checkpoints ----------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """SGD's state plus the scales in use, the running statistics and the refresh counter;
        tensors are keyed by the parameter's index in ``model.parameters()``."""
        index = {p: i for i, p in enumerate(self.model.parameters())}
        running = (
            None
            if self._running is None
            else [({index[p]: b for p, b in betas.items()}, alpha) for betas, alpha in self._running]
        )
        return {
            **super().state_dict(),
            "steps": self._steps,
            "scales": {index[p]: s for p, s in self._scales.items()},
            "running": running,
            "running_var": dict(self._running_var),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        params = list(self.model.parameters())
        self._steps = state["steps"]
        self._scales = {params[i]: s for i, s in state["scales"].items()}
        self._views = [s.view(-1, *([1] * (p.dim() - 1))) if s.dim() else s for p, s in self._scales.items()]
        self._running = (
            None
            if state["running"] is None
            else [({params[i]: b for i, b in betas.items()}, alpha) for betas, alpha in state["running"]]
        )
        self._running_var = dict(state["running_var"])

    # --- the step -----------------------------------------------------------------------------
    def amend_gradients(self) -> None:
        if self._steps % self.options["refresh_every"] == 0:
            self._scales = self.parameter_scales()
            self._views = [s.view(-1, *([1] * (p.dim() - 1))) if s.dim() else s for p, s in self._scales.items()]
        self._steps += 1
        grads = [p.grad for p in self._scales]
        if not grads:  # bn_weights on a network without BN: plain SGD
            return
        if all(g is not None for g in grads):
            torch._foreach_mul_(grads, self._views)
        else:
            for g, view in zip(grads, self._views):
                if g is not None:
                    g.mul_(view)

    def scalars(self) -> dict[str, torch.Tensor]:
        """The weight scale of every block, and the head's (1 where not amended): what the dashboard plots."""
        weights = [b.weight for b in self.model.blocks] + [self.model.head.linear.weight]
        names = [scale_name(b) for b in range(len(weights) - 1)] + [scale_name("head")]
        one = weights[0].new_ones(())
        return {name: self._scales[w].detach().mean() if w in self._scales else one for name, w in zip(names, weights)}


def pool_shrink(pool: str, positions: int = 1) -> int:
    """How much smaller alpha (the trace of the input Hessian per input entry) is when taken per entry
    of the unpooled map that feeds a pool than per entry of what the pool hands on. Mean over
    ``positions`` places: the Jacobian is 1/positions as large at positions times the entries,
    positions^2. Max over 2x2: each output reads exactly one input (the Jacobian's norm is kept) out
    of four entries, 4."""
    return {"none": 1, "mean": positions**2, "max": 4}[pool]
