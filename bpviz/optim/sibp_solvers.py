"""The two ways bpviz solves SIBP's layer-wise proximal problems

    min_θ ‖σ(a θ) − f̂‖² + λ‖θ − θ_k‖²      (a: the layer input, θ: the layer's W and b, f̂: its target)

* ``authors`` — a port of the authors' MATLAB solvers (liur0810/semi-implicit-back-propagation,
  ``FR3.m`` for hidden ReLU layers, ``FR4.m`` for the linear output layer; seeds.md §2.5): W first
  (old b), then b (new W), each by a few Fletcher–Reeves nonlinear-CG iterations with Armijo
  backtracking. Its quirks are kept on purpose, so that bpviz's SIBP is the algorithm the paper's
  numbers come from (``AUTHORS_QUIRKS`` lists them; a test checks each).
* ``gauss_newton`` — bpviz's first solver: Gauss–Newton steps on [W, b] jointly, each solved by a few
  matrix-free CG iterations (hidden layers), the output layer by an exact Cholesky solve. It takes a
  longer step than the authors' truncated solve, in a different direction; kept as a named option
  because it is the accurate prox (raise its iterations and it converges to the exact prox step).

Both work in the row layout of bpviz (samples are rows: a is n × d, W is m × d).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from ..device import read_numbers
from ..models import ACTIVATIONS
from .proxbp import add_to_diagonal, cholesky_solve_right, row_cg, with_ones

#: What the authors' code does that a textbook FR-CG + Armijo would not; kept, each checked in tests.
AUTHORS_QUIRKS = (
    "a step is applied only when the accepted backtracking exponent is > 0 (an accepted full step is discarded)",
    "hidden layers: the first trial is the full step, but when it passes Armijo the exponent recorded (and "
    "applied) is the heuristic max(floor(log(0.01 f / |σ gᵀd|) / log ρ), 0), which was not itself tested; "
    "when it fails, backtracking goes on from that exponent + 1",
    "output layer: the first gradient leaves out the other term of the affine map (b for the W solve, "
    "W f for the b solve); later gradients include it",
    "Fletcher–Reeves without restarts: β = ‖g_new‖² / ‖g‖², even when the direction is not a descent direction",
)
#: Armijo trials per FR iteration in the authors' code (``while(m<50)``).
ARMIJO_TRIALS = 50


def derivative(name: str, g: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
    """σ'(g) for f = σ(g), from the output where that saves evaluating σ again (tanh, sigmoid).
    For ReLU it is 1[g > 0] = 1[σ(g) > 0], the authors' mask."""
    if name == "tanh":
        return torch.addcmul(f.new_ones(()), f, f, value=-1.0)  # 1 - f^2
    if name == "sigmoid":
        return torch.addcmul(f, f, f, value=-1.0)  # f - f^2
    return ACTIVATIONS[name][1](g)


class FletcherReevesArmijo:
    """``FR3.m`` / ``FR4.m``: ``iters`` Fletcher–Reeves iterations from x_old with Armijo backtracking
    (ρ, σ, at most 50 trials), on f(x) = ‖σ(affine(x)) − target‖² + λ‖x − x_old‖² (no ½, as the authors).
    ``heuristic_start`` is FR3's first-exponent heuristic (hidden layers; FR4 has it commented out).
    Counts how many iterations applied a step (``applied``) out of how many ran (``ran``).

    The trials' values are read from the device ``trials_per_read`` at a time (f0, the slope and the
    full step in one read first): each trial is computed as it would be alone, so the steps taken are
    the same for any value; on a GPU a read is a wait for the queued work, on a CPU an extra trial is
    work thrown away, so the CPU reads one at a time."""

    def __init__(self, iters: int, rho: float, sigma: float, trials_per_read: int = 1):
        self.iters, self.rho, self.sigma = iters, rho, sigma
        self.trials_per_read = trials_per_read
        self.applied = 0
        self.ran = 0

    def minimise(
        self,
        objective: Callable[[torch.Tensor], torch.Tensor | float],
        gradient: Callable[[torch.Tensor], torch.Tensor],
        x_old: torch.Tensor,
        first_gradient: torch.Tensor,
        heuristic_start: bool,
    ) -> torch.Tensor:
        rho, sigma = self.rho, self.sigma
        x = x_old
        g = first_gradient
        d = -g
        for _ in range(self.iters):
            # the full step written as every trial is (ρ⁰ d), so that its value is the same bits
            f0, gd, full = read_numbers([objective(x), torch.sum(g * d), objective(x + rho**0.0 * d)], x.device)
            slope = sigma * gd
            values = {0.0: full}  # trial exponent -> f(x + ρ^m d), read ahead in batches

            def trial(m: float) -> float:
                if m not in values:
                    ms = [m + j for j in range(self.trials_per_read) if m + j < ARMIJO_TRIALS]
                    values.update(zip(ms, read_numbers([objective(x + rho**k * d) for k in ms], x.device)))
                return values[m]

            m, accepted = 0.0, 0.0
            tested_first = not heuristic_start
            while m < ARMIJO_TRIALS:
                f1 = trial(m)
                bound = f0 + slope * rho**m
                if not tested_first:  # FR3: the heuristic replaces m after the full step was evaluated
                    m = first_exponent(f0, slope, rho)
                    tested_first = True
                if f1 < bound:
                    accepted = m
                    break
                m += 1
            self.ran += 1
            if accepted > 0:
                x = x + rho**accepted * d
                self.applied += 1
            g_new = gradient(x)
            beta = torch.sum(g_new * g_new) / torch.sum(g * g)
            d = beta * d - g_new
            g = g_new
        return x


def first_exponent(f0: float, slope: float, rho: float) -> float:
    """FR3's ``max(floor(log(f0*0.01/|slope|)/log(rho)), 0)`` with MATLAB's arithmetic: a zero slope
    gives log(inf) and the exponent 0; NaN is dropped by ``max``; +inf means a zero step."""
    with np.errstate(all="ignore"):
        value = np.floor(np.log(np.float64(f0) * 0.01 / np.abs(np.float64(slope))) / np.log(rho))
    return float(np.fmax(value, 0.0))


def authors_prox(
    a: torch.Tensor,
    target: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor,
    lam: float,
    activation: str,
    output_layer: bool,
    solver: FletcherReevesArmijo,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One layer's prox as ``sibp_inner.m`` solves it: W by FR (old b), then b by FR (new W): the
    output layer (linear) as ``FR4.m``, a hidden layer as ``FR3.m`` (written for ReLU; other
    activations use σ and σ' in the same formulas)."""
    act = ACTIVATIONS[activation][0]

    def pieces(pre: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out = act(pre)
        return out - target, derivative(activation, pre, out)

    def w_objective(w: torch.Tensor) -> torch.Tensor:
        res, _ = pieces(torch.addmm(bias, a, w.t()))
        return torch.sum(res * res) + lam * torch.sum((w - weight) ** 2)

    def w_gradient(w: torch.Tensor) -> torch.Tensor:
        res, slope = pieces(torch.addmm(bias, a, w.t()))
        return 2.0 * ((res * slope).t() @ a) + 2.0 * lam * (w - weight)

    w_first = 2.0 * ((a @ weight.t() - target).t() @ a) if output_layer else w_gradient(weight)
    new_weight = solver.minimise(w_objective, w_gradient, weight, w_first, heuristic_start=not output_layer)
    fixed = a @ new_weight.t()

    def b_objective(b: torch.Tensor) -> torch.Tensor:
        res, _ = pieces(fixed + b)
        return torch.sum(res * res) + lam * torch.sum((b - bias) ** 2)

    def b_gradient(b: torch.Tensor) -> torch.Tensor:
        res, slope = pieces(fixed + b)
        return 2.0 * (res * slope).sum(0) + 2.0 * lam * (b - bias)

    b_first = 2.0 * (bias - target).sum(0) if output_layer else b_gradient(bias)
    new_bias = solver.minimise(b_objective, b_gradient, bias, b_first, heuristic_start=not output_layer)
    return new_weight, new_bias


def gauss_newton_output_prox(
    a: torch.Tensor, delta: torch.Tensor, eta: float, lam: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """The output layer's prox, exact and joint in [W, b]: argmin ‖ã θ − f̂‖² + λ‖θ − θ_k‖² with
    ã = [a, 1]; at θ_k the residual is η δ, so the step is −η δᵀã (ãᵀã + λI)⁻¹ (no cancellation).
    Returns ([W, b] − [W_k, b_k], 1 if the Cholesky factorisation failed)."""
    a1 = with_ones(a)
    chol, info = torch.linalg.cholesky_ex(add_to_diagonal(a1.t() @ a1, lam))
    return cholesky_solve_right(delta.t() @ a1, chol).mul_(-eta), (info > 0).to(torch.int64)


def gauss_newton_hidden_prox(
    a: torch.Tensor,
    g_old: torch.Tensor,
    f_old: torch.Tensor,
    delta: torch.Tensor,
    eta: float,
    lam: float,
    activation: str,
    inner_iters: int,
    cg_iters: int,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """A hidden layer's prox min_θ ‖σ(ãθ) − f̂‖² + λ‖θ − θ_k‖² by ``inner_iters`` Gauss–Newton steps from
    θ_k, each solving (ãᵀD²ã + λI)Δ = −(ãᵀ(D r) + λ(θ − θ_k)) (D = σ'(ãθ), r = σ(ãθ) − f̂, one system
    per output unit) by ``cg_iters`` CG iterations batched over the units. The residual is formed as
    (σ(g) − f_k) + ηδ, exactly ηδ at θ_k. Returns (θ − θ_k, the last CG relative residual, the last GN
    correction relative to the step when ``inner_iters`` > 1)."""
    a1 = with_ones(a)
    d_old = derivative(activation, g_old, f_old)
    off = None
    for _ in range(inner_iters):
        if off is None:
            d = d_old
            rhs = torch.mm((delta * d).t(), a1).mul_(-eta)
        else:
            g = torch.addmm(g_old, a1, off.t())
            f = ACTIVATIONS[activation][0](g)
            d = derivative(activation, g, f)
            res = (f - f_old).add_(delta, alpha=eta)
            rhs = torch.addmm(off, (d * res).t(), a1, beta=-lam, alpha=-1.0)
        d2 = d if activation in ("relu", "linear") else d * d  # 0/1 or 1: d^2 = d
        corr, cg_res = row_cg(lambda p: torch.addmm(p, ((a1 @ p.t()) * d2).t(), a1, beta=lam), rhs, cg_iters)
        off = corr if off is None else off.add_(corr)
    gn_step = None
    if inner_iters > 1:
        gn_step = torch.linalg.vector_norm(corr) / torch.linalg.vector_norm(off).clamp_min(torch.finfo(off.dtype).tiny)
    return off, cg_res, gn_step
