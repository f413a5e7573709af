"""Semi-implicit back-propagation (SIBP; Ren Liu and Xiaoqun Zhang, arXiv:2002.03516, 2020) for
plain MLPs: proximal (implicit) parameter updates layer by layer, with the neuron differences
propagated backwards through the *updated* weights.

Sources (``shared/research/seeds.md`` §2.3–2.7): the algorithm follows the authors' MATLAB code
``sibp_inner.m`` step by step; the inner solvers are our own (see ``SIBP``'s docstring for every
deviation). The paper's own notation and any statement beyond the code and abstract are
reconstruction.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from ..config import RunConfig
from ..models import ACTIVATIONS, BlockNet, network_loss
from .base import Algorithm, Option, StepResult
from .proxbp import (OpenOption, add_to_diagonal, cholesky_solve_right, refuse_non_mlp_config, refuse_non_mlp_model,
                     row_cg, with_ones)


class SIBP(Algorithm):
    r"""Semi-implicit back-propagation for plain MLPs (Linear blocks with an elementwise activation).

    **Step sizes.** ``lr`` is η, the explicit step on the neurons (the authors' default is η = 0.1;
    bpviz takes it from the config's ``lr``). The option ``lam`` is λ, the proximal weight (prox step
    size 1/λ; authors' default 1). As λ → ∞ one step tends to SGD with step η/λ on the *summed* loss,
    i.e. SGD with lr n·η/λ on bpviz's batch-mean loss.

    **Loss convention.** Like the authors' code (``δ_N = softmax(f_N) − Y``, no 1/n), SIBP works with
    the loss summed over the batch: δ_N = n · ∂ network_loss / ∂f_N by autograd, n the batch size.
    For classification that is softmax(f_N) − onehot(y); for regression (bpviz's MSE averages over
    the batch *and* the m outputs) it is 2(f_N − y)/m. ``StepResult.loss`` is still the batch-mean
    ``network_loss`` before the step.

    **One step** (``sibp_inner.m``; seeds.md §2.4), with f_0 = ``model.prepare(x)``, g_i = W_i f_{i-1} + b_i,
    f_i = σ(g_i), and ã_{i-1} = [f_{i-1}, 1] (a ones column for the bias):

    1. forward pass, keeping every g_i^k and f_i^k;
    2. output targets f̂_N = f_N − η δ_N;
    3. output layer (the head's Linear), proximal step solved **exactly, jointly for [W, b]**:
       argmin ‖ã_{N-1}[W,b]ᵀ − f̂_N‖² + λ‖[W,b] − [W_k,b_k]‖², by a Cholesky factorisation of
       ã_{N-1}ᵀã_{N-1} + λI. *Deviation:* the authors solve W (old b) then b (new W), each with 5
       Fletcher–Reeves CG iterations plus Armijo backtracking (``FR4.m``);
    4. δ_{N-1} = δ_N W_N^{k+1} (the **updated** head weight: "semi-implicit"),
       f̂_{N-1} = f_{N-1} − η δ_{N-1};
    5. for hidden layers i = N−1, …, 1: the proximal fit with the activation inside,
       min_θ ‖σ(ã_{i-1}θ) − f̂_i‖² + λ‖θ − θ_k‖² (θ = [Wᵀ; bᵀ]; separable over output units), solved
       approximately by ``inner_iters`` Gauss–Newton steps from θ_k, each solving
       (ãᵀD²ã + λI)Δ = −(ãᵀ(D r) + λ(θ − θ_k)) (D = σ'(ãθ), r = σ(ãθ) − f̂, one system per unit) by
       ``cg_iters`` CG iterations batched over all units, matrix-free. *Deviation:* the authors solve
       W then b with 5 Fletcher–Reeves nonlinear-CG iterations plus Armijo (``FR3.m``, ReLU only);
       Gauss–Newton/CG is our choice (no line search, no host synchronisation). For a linear
       activation the fit is linear least squares and one GN step is exact when CG is exact. Then,
       if i > 1: δ_{i-1} = (δ_i ⊙ σ'(g_i^k)) W_i^{k+1} (σ' at the **old** forward pass, the **new**
       weight) and f̂_{i-1} = f_{i-1} − η δ_{i-1};
    6. the new parameters are assigned directly (no wrapper optimizer, no momentum).

    Targets are never formed explicitly: the residual is computed as (σ(g) − f^k) + ηδ, which is
    exactly ηδ at θ_k, so λ → ∞ and fixed points lose no precision to cancellation.

    **Defaults and accuracy.** ``inner_iters=1, cg_iters=2`` are chosen for speed (about 2.5–3× an
    SGD step on an 8×64 tanh MLP on the CPU; 2 GN × 4 CG steps cost about 6–7×). They keep the two
    properties the paper relies on: (a) as λ → ∞ the step is SGD with step η/λ on the summed loss
    (the system matrix tends to λI, which CG solves in one iteration); (b) with ``inner_iters=1``,
    fixed points are stationary points *even though the solves are inexact*: the single
    Gauss–Newton step starts at θ_k, where its right-hand side is −η ãᵀ(σ'(g^k) ⊙ δ_i), the gradient
    of the summed loss once δ_i is the BP error (which it is at a fixed point), and k ≥ 1 CG steps
    from zero return zero iff the right-hand side is zero; the head is solved exactly. (The paper's
    argument, seeds.md §2.7, assumes exact prox solves; with several GN steps it holds when they
    converge.) What inexactness costs is step length: CG from zero under-solves, so the effective
    step is shorter than the exact prox step (on spirals at equal wall-clock time the cheap and the
    accurate settings reach similar losses; at equal step counts the accurate ones are ahead).
    Raise ``inner_iters``/``cg_iters`` for a more accurate implicit step.

    **Huge step sizes are not stable.** Only the parameter update is implicit; the targets
    f̂ = f − ηδ are an explicit step, so a huge η asks the layers to fit huge targets, and a tiny λ
    removes the only damping of an ill-conditioned fit. Measured (spirals, 3×16 tanh): float64 stays
    finite but the loss jumps by orders of magnitude; float32 overflows to NaN.

    Scalars: ``cg_residual`` (largest relative CG residual of the last Gauss–Newton step over hidden
    layers), ``gn_step`` (only when ``inner_iters`` > 1: the largest ‖last GN correction‖ /
    ‖θ^{k+1} − θ^k‖ over hidden layers, how far the Gauss–Newton iteration is from converged),
    ``factor_failed`` (1 when the output layer's Cholesky failed, i.e. the matrix is numerically
    singular; the step is then NaN).
    """

    name = "sibp"
    summary = "semi-implicit back-propagation: proximal layer updates, differences propagated through new weights"
    OPTIONS = {
        "lam": OpenOption(1.0, "proximal weight λ (prox step size 1/λ); authors' default 1", lo=0.0, open_lo=True),
        "inner_iters": Option(1, "Gauss-Newton iterations for each hidden layer's nonlinear proximal fit", lo=1),
        "cg_iters": Option(2, "conjugate-gradient iterations per Gauss-Newton step", lo=1),
    }

    def __init__(self, model: BlockNet, lr: float, **options: Any):
        super().__init__(model, lr, **options)
        refuse_non_mlp_model(self.name, model)

    @classmethod
    def check_config(cls, cfg: RunConfig) -> None:
        refuse_non_mlp_config(cls.name, cfg)

    def step(self, x: torch.Tensor, y: torch.Tensor) -> StepResult:
        model = self.model
        eta = self.lr
        lam = self.options["lam"]
        inner, cg_iters = self.options["inner_iters"], self.options["cg_iters"]
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
        n = out.shape[0]
        scalars: dict[str, torch.Tensor] = {}
        with torch.no_grad():
            # Row layout throughout: [W, b] is m x (d+1), an update lands directly in W's layout.
            delta = grad_out.mul_(n)  # gradient of the summed loss w.r.t. the logits
            # output layer: exact joint prox of the linear least-squares fit
            a = with_ones(fs[-1])
            chol, info = torch.linalg.cholesky_ex(add_to_diagonal(a.t() @ a, lam))
            scalars["factor_failed"] = (info > 0).to(torch.int64)
            step = cholesky_solve_right(delta.t() @ a, chol).mul_(-eta)  # [W, b] - [W_k, b_k]
            head.weight.add_(step[:, :-1])
            head.bias.add_(step[:, -1])
            delta = delta @ head.weight  # semi-implicit: the UPDATED weight
            residuals, gn_steps = [], []
            for j in range(len(model.blocks) - 1, -1, -1):
                block = model.blocks[j]
                name = block.activation
                a = with_ones(fs[j])
                d_old = derivative(name, gs[j], fs[j + 1])  # sigma'(g_k)
                off = None  # [W, b] - [W_k, b_k]
                for t in range(inner):
                    if off is None:  # at theta_k: sigma(g_k) - f_k = 0 exactly, so r = eta * delta
                        d = d_old
                        rhs = torch.mm((delta * d).t(), a).mul_(-eta)
                    else:
                        g = torch.addmm(gs[j], a, off.t())
                        f = ACTIVATIONS[name][0](g)
                        d = derivative(name, g, f)
                        res = (f - fs[j + 1]).add_(delta, alpha=eta)
                        rhs = torch.addmm(off, (d * res).t(), a, beta=-lam, alpha=-1.0)
                    d2 = d if name in ("relu", "linear") else d * d  # 0/1 or 1: d^2 = d
                    corr, cg_res = row_cg(lambda p: torch.addmm(p, ((a @ p.t()) * d2).t(), a, beta=lam), rhs, cg_iters)
                    off = corr if off is None else off.add_(corr)
                residuals.append(cg_res)
                if inner > 1:
                    gn_steps.append(torch.linalg.vector_norm(corr) / torch.linalg.vector_norm(off).clamp_min(
                        torch.finfo(off.dtype).tiny))
                block.affine.weight.add_(off[:, :-1])
                block.affine.bias.add_(off[:, -1])
                if j > 0:
                    delta = (delta * d_old) @ block.affine.weight  # old sigma', new weight
            if residuals:
                scalars["cg_residual"] = torch.stack(residuals).max()
            if gn_steps:
                scalars["gn_step"] = torch.stack(gn_steps).max()
        return StepResult(loss=loss.detach(), scalars=scalars)


def derivative(name: str, g: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
    """σ'(g) for f = σ(g), from the output where that saves evaluating σ again (tanh, sigmoid);
    identical in value to ``ACTIVATIONS[name][1](g)`` up to rounding."""
    if name == "tanh":
        return torch.addcmul(f.new_ones(()), f, f, value=-1.0)  # 1 - f^2
    if name == "sigmoid":
        return torch.addcmul(f, f, f, value=-1.0)  # f - f^2
    return ACTIVATIONS[name][1](g)
