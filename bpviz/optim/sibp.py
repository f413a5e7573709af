"""Semi-implicit back-propagation (SIBP; Ren Liu and Xiaoqun Zhang, arXiv:2002.03516, 2020) for
plain MLPs: proximal (implicit) parameter updates layer by layer, with the neuron differences
propagated backwards through the *updated* weights.

Sources (``shared/research/seeds.md`` §2.3–2.7): the step follows the authors' MATLAB code
``sibp_inner.m``; by default each layer's prox is solved as their ``FR3.m`` / ``FR4.m`` solve it
(``sibp_solvers``). The paper's own notation and any statement beyond the code and abstract are
reconstruction.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from ..models import ACTIVATIONS, BlockNet, network_loss
from ..options import ALGORITHM_OPTIONS
from .base import Algorithm, StepResult
from .proxbp import refuse_non_mlp_model
from .sibp_solvers import (
    FletcherReevesArmijo,
    authors_prox,
    derivative,
    gauss_newton_hidden_prox,
    gauss_newton_output_prox,
)

#: Armijo trials the authors' solver evaluates per read off a CPU (on a GPU each read is a wait for
#: the queued kernels: one per trial made the 1,000 steps of the preset sibp-large-step wait
#: 356,000 times on an H200, docs/results.md); on the CPU one at a time, as extra trials are wasted work
TRIALS_PER_READ_OFF_CPU = 8


class SIBP(Algorithm):
    r"""Semi-implicit back-propagation for plain MLPs (Linear blocks with an elementwise activation).

    **Step sizes.** ``lr`` is η, the explicit step on the neurons (the authors' default is η = 0.1).
    The option ``lam`` is λ, the proximal weight (prox step size 1/λ; authors' default 1). Only as
    λ → ∞ does one step tend to SGD (with step η/λ on the *summed* loss, i.e. lr n·η/λ on bpviz's
    batch-mean loss); at λ = 1 it is far from an SGD step even for tiny η.

    **Loss convention.** Like the authors' code (``δ_N = softmax(f_N) − Y``, no 1/n), SIBP works with
    the loss summed over the batch: δ_N = n · ∂ network_loss / ∂f_N by autograd, n the batch size
    (for regression, where bpviz's MSE averages over the m outputs too, that is 2(f_N − y)/m).
    ``StepResult.loss`` is the batch-mean ``network_loss`` before the step.

    **One step** (``sibp_inner.m``), f_0 = ``model.prepare(x)``, g_i = W_i f_{i-1} + b_i, f_i = σ(g_i):

    1. forward pass, keeping every g_i^k and f_i^k;
    2. output targets f̂_N = f_N − η δ_N;
    3. the output layer's prox min ‖W f_{N-1} + b − f̂_N‖² + λ‖[W, b] − [W_k, b_k]‖²;
    4. δ_{N-1} = δ_N W_N^{k+1} (the **updated** weight: "semi-implicit"), f̂_{N-1} = f_{N-1} − η δ_{N-1};
    5. for hidden layers i = N−1, …, 1: the prox with the activation inside,
       min ‖σ(W f_{i-1} + b) − f̂_i‖² + λ‖[W, b] − [W_k, b_k]‖²; then, if i > 1,
       δ_{i-1} = (δ_i ⊙ σ'(g_i^k)) W_i^{k+1} (old σ', new weight) and f̂_{i-1} = f_{i-1} − η δ_{i-1};
    6. the new parameters are assigned directly (no wrapper optimizer, no momentum).

    **Solvers** (option ``solver``): ``"authors"`` (default) — W then b, each by ``fr_iters``
    Fletcher–Reeves iterations with Armijo backtracking (``armijo_rho``, ``armijo_sigma``), quirks
    included (``sibp_solvers.AUTHORS_QUIRKS``): a conservative, monotone, truncated prox. The authors
    wrote it for ReLU; other activations use σ and σ' in the same formulas. Every Armijo trial reads
    one number back to the host, so on a GPU it is slower per step than the solve's arithmetic.
    ``"gauss_newton"`` — bpviz's own: [W, b] jointly, ``inner_iters`` Gauss–Newton steps of
    ``cg_iters`` CG iterations (hidden layers), an exact Cholesky solve (output layer); the options of
    the other solver are ignored.

    Scalars: ``fr_applied`` (authors: the fraction of FR iterations that moved, over all layers);
    ``cg_residual``, ``gn_step`` and ``factor_failed`` (gauss_newton; see ``sibp_solvers``).
    """

    name = "sibp"
    summary = "semi-implicit back-propagation: proximal layer updates, differences propagated through new weights"
    OPTIONS = ALGORITHM_OPTIONS["sibp"]
    SCALARS = ("fr_applied", "cg_residual", "gn_step", "factor_failed")

    def __init__(self, model: BlockNet, lr: float, **options: Any):
        super().__init__(model, lr, **options)
        refuse_non_mlp_model(self.name, model)

    def step(self, x: torch.Tensor, y: torch.Tensor) -> StepResult:
        model = self.model
        with torch.no_grad():
            fs = [model.prepare(x)]
            gs = []
            for block in model.blocks:
                g = F.linear(fs[-1], block.affine.weight, block.affine.bias)
                gs.append(g)
                fs.append(ACTIVATIONS[block.activation][0](g))
            head = model.head.linear
            out = F.linear(fs[-1], head.weight, head.bias)
        with torch.enable_grad():
            out.requires_grad_(True)
            loss = network_loss(out, y)
            (grad_out,) = torch.autograd.grad(loss, out)
        with torch.no_grad():
            delta = grad_out.mul_(out.shape[0])  # gradient of the summed loss w.r.t. the logits
            if self.options["solver"] == "authors":
                scalars = self._authors_step(fs, gs, out, delta)
            else:
                scalars = self._gauss_newton_step(fs, gs, delta)
        return StepResult(loss=loss.detach(), scalars=scalars)

    def _authors_step(
        self, fs: list[torch.Tensor], gs: list[torch.Tensor], out: torch.Tensor, delta: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        """``sibp_inner.m``, with the targets formed explicitly as the authors do."""
        eta, lam, opts = self.lr, self.options["lam"], self.options
        on_cpu = out.device.type == "cpu"
        solver = FletcherReevesArmijo(
            opts["fr_iters"], opts["armijo_rho"], opts["armijo_sigma"], 1 if on_cpu else TRIALS_PER_READ_OFF_CPU
        )
        layers = [(b.affine, b.activation) for b in self.model.blocks] + [(self.model.head.linear, "linear")]
        outputs = fs[1:] + [out]
        for i in range(len(layers) - 1, -1, -1):
            linear, activation = layers[i]
            target = outputs[i] - eta * delta
            weight, bias = authors_prox(
                fs[i],
                target,
                linear.weight.detach().clone(),
                linear.bias.detach().clone(),
                lam,
                activation,
                i == len(layers) - 1,
                solver,
            )
            linear.weight.copy_(weight)
            linear.bias.copy_(bias)
            if i > 0:
                if i < len(layers) - 1:  # hidden layer: through σ' of the old forward pass
                    delta = delta * derivative(activation, gs[i], fs[i + 1])
                delta = delta @ linear.weight
        return {"fr_applied": torch.tensor(solver.applied / max(solver.ran, 1))}

    def _gauss_newton_step(
        self, fs: list[torch.Tensor], gs: list[torch.Tensor], delta: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        eta, lam = self.lr, self.options["lam"]
        head = self.model.head.linear
        step, failed = gauss_newton_output_prox(fs[-1], delta, eta, lam)
        scalars: dict[str, torch.Tensor] = {"factor_failed": failed}
        head.weight.add_(step[:, :-1])
        head.bias.add_(step[:, -1])
        delta = delta @ head.weight
        residuals, gn_steps = [], []
        for j in range(len(self.model.blocks) - 1, -1, -1):
            block = self.model.blocks[j]
            off, cg_res, gn_step = gauss_newton_hidden_prox(
                fs[j],
                gs[j],
                fs[j + 1],
                delta,
                eta,
                lam,
                block.activation,
                self.options["inner_iters"],
                self.options["cg_iters"],
            )
            residuals.append(cg_res)
            if gn_step is not None:
                gn_steps.append(gn_step)
            block.affine.weight.add_(off[:, :-1])
            block.affine.bias.add_(off[:, -1])
            if j > 0:
                delta = (delta * derivative(block.activation, gs[j], fs[j + 1])) @ block.affine.weight
        if residuals:
            scalars["cg_residual"] = torch.stack(residuals).max()
        if gn_steps:
            scalars["gn_step"] = torch.stack(gn_steps).max()
        return scalars
