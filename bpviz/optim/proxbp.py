"""ProxBP / ProxProp (Frerix, Möllenhoff, Moeller, Cremers, ICLR 2018): implicit (proximal) steps on
the affine maps of a plain MLP, fed to ``torch.optim.SGD`` as a "gradient".

Sources (see ``shared/research/seeds.md`` §2.8, §3.2): the official code ``tfrerix/proxprop``
(``ProxProp.py``: the explicit z-step with the autograd gradient of the batch-mean loss, the
``prox_exact`` / ``prox_cg{N}`` solvers, the parameters stacked as ``[Wᵀ; bᵀ]`` with a ones column in
the input, the update written into ``.grad`` for a wrapper optimizer, a plain ``nn.Linear`` head
trained by an ordinary gradient step) and the descent-direction form derived in seeds.md §2.8,
which this module implements directly. What is reconstruction rather than the official code is said
where it applies (the CG stopping rule, the head's step size, the ``tau`` option's name).
"""

from __future__ import annotations

from typing import Any

import torch

from ..models import BlockNet, LinearBlock, network_loss
from ..options import ALGORITHM_OPTIONS, not_a_plain_mlp
from .base import Algorithm, StepResult


def refuse_non_mlp_model(algo: str, model: BlockNet) -> None:
    """ConfigError (saying why) unless ``model`` is a plain MLP: a model handed over directly was not
    built from a checked config (:func:`bpviz.options.check_optimizer` refuses such configs)."""
    for i, block in enumerate(model.blocks):
        if not isinstance(block, LinearBlock):
            why = f"block {i} is a {type(block).__name__}, not a LinearBlock."
        elif block.bn is not None:
            why = f"block {i} has BatchNorm, which couples the samples of a batch."
        elif block.skip:
            why = f"block {i} has a skip connection, which the layer-wise fit does not model."
        else:
            continue
        raise not_a_plain_mlp(algo, why)
    if model.head.pool != "none":
        raise not_a_plain_mlp(algo, "the head pools a convolutional feature map.")


def with_ones(a: torch.Tensor) -> torch.Tensor:
    """``[a, 1]``: the block input with a ones column, so ``[a, 1] @ [Wᵀ; bᵀ] = a Wᵀ + b``."""
    return torch.cat([a, a.new_ones(a.shape[0], 1)], dim=1)


def add_to_diagonal(m: torch.Tensor, value: float) -> torch.Tensor:
    m.diagonal().add_(value)
    return m


class ProxBP(Algorithm):
    r"""Proximal back-propagation (ProxProp) for plain MLPs.

    **Step sizes.** ``lr`` is τ_θ, the proximal step size on the parameters; the option ``tau`` is
    the explicit step on the pre-activations z (the official code uses 1).

    **One step on a batch (x, y).** Forward pass; L = ``network_loss`` (the batch *mean*, as
    everywhere in bpviz); autograd gives ∇L for every parameter with the old weights. For every hidden
    block b (Linear then elementwise activation), with A = [a_{b-1}, 1] (batch × (d+1), the block input
    with a ones column) and θ = [Wᵀ; bᵀ] ((d+1) × m):

    * the z-targets are Y = Aθ_k − tau · ∂L/∂z (an explicit step on the pre-activation);
    * the parameters take the proximal step
      θ_prox = argmin_θ ½‖Aθ − Y‖² + 1/(2τ_θ) ‖θ − θ_k‖², i.e.
      **θ_prox − θ_k = −tau · (AᵀA + I/τ_θ)⁻¹ ∇_θ L**  (seeds.md §2.8, descent-direction form;
      AᵀA is *not* divided by the batch size, because L is a mean and ∂L/∂z already carries 1/n).
      ``solver="exact"``: one Cholesky factorisation of the (d+1)×(d+1) matrix, all m columns solved
      at once (the official ``prox_exact``). ``solver="cg"``: block conjugate gradient, one CG per
      output unit (column of θ), all advancing together, matrix-free (A(·) then Aᵀ(·)), ``cg_iters``
      iterations from a zero correction (the official code starts at X₀ = θ_k, the same thing);
      unlike the official code it has no early-stopping tolerance (a fixed iteration count keeps the
      step free of host synchronisation).
    * the output head (a plain Linear, as in the official models) takes an explicit gradient step of
      size τ_θ. This choice of step is ours (the official code gives the head the wrapper optimizer's
      lr): it makes the whole update tend to SGD with lr τ_θ as τ_θ → 0.

    **Applying the update.** As in the official code, the *negative* update direction (θ_k − θ_prox,
    and τ_θ ∇ for the head) is written into ``.grad`` and a ``torch.optim.SGD(lr=1, momentum,
    nesterov)`` steps; with momentum 0 the parameters become exactly θ_prox.

    **Huge step sizes are not stable.** As τ_θ → ∞ the block update tends to −tau·(AᵀA)⁻¹∇, an
    unregularised layer-wise least-squares (Gauss–Newton) step, and AᵀA is often nearly singular
    (saturated or collinear units), so the step is not bounded by the implicitness. Measured (spirals,
    3×16 tanh, τ_θ = 1e6): float64 stays finite but the loss jumps to ~1e5–1e7; in float32 the
    Cholesky factorisation fails (``factor_failed`` > 0) and the parameters become NaN.

    Refuses conv blocks, BatchNorm and skip connections (configs: ``bpviz.options``; models: here).
    Scalars: ``cg_residual`` (solver "cg": the largest relative residual ‖r‖/‖∇‖ over blocks) and
    ``factor_failed`` (solver "exact": how many Cholesky factorisations failed, which happens only
    when AᵀA + I/τ_θ is numerically singular, e.g. a huge τ_θ in float32; the update is then NaN).
    """

    name = "proxbp"
    summary = "proximal back-propagation (ProxProp): implicit steps on the affine maps of an MLP"
    OPTIONS = ALGORITHM_OPTIONS["proxbp"]
    SCALARS = ("cg_residual", "factor_failed")

    def __init__(self, model: BlockNet, lr: float, **options: Any):
        super().__init__(model, lr, **options)
        refuse_non_mlp_model(self.name, model)
        o = self.options
        self.optimizer = torch.optim.SGD(
            model.parameters(), lr=1.0, momentum=o["momentum"], nesterov=o["nesterov"] and o["momentum"] > 0
        )

    def step(self, x: torch.Tensor, y: torch.Tensor) -> StepResult:
        model = self.model
        tau_theta = self.lr
        tau = self.options["tau"]
        with torch.enable_grad():
            z = model.prepare(x)
            inputs = []
            for block in model.blocks:
                inputs.append(z.detach())
                z = block(z)
            loss = network_loss(model.head(z), y)
            params = list(model.parameters())
            grads = torch.autograd.grad(loss, params)
        grad_of = {id(p): g for p, g in zip(params, grads)}

        scalars: dict[str, torch.Tensor] = {}
        residuals, failures = [], []
        with torch.no_grad():
            for block, a in zip(model.blocks, inputs):
                w, b = block.affine.weight, block.affine.bias
                # Row layout: [W, b] (m x (d+1)) is theta transposed, so the update lands in W's layout.
                g_rows = torch.cat([grad_of[id(w)], grad_of[id(b)].unsqueeze(1)], dim=1)
                A = with_ones(a)
                if self.options["solver"] == "exact":
                    chol, info = torch.linalg.cholesky_ex(add_to_diagonal(A.t() @ A, 1.0 / tau_theta))
                    failures.append(info)
                    step = cholesky_solve_right(g_rows, chol)  # g_rows M^{-1} = (M^{-1} grad_theta)^T
                else:
                    step, res = row_cg(
                        lambda p: torch.addmm(p, (A @ p.t()).t(), A, beta=1.0 / tau_theta),
                        g_rows,
                        self.options["cg_iters"],
                    )
                    residuals.append(res)
                # .grad holds the NEGATIVE update: theta_k - theta_prox = tau * M^{-1} grad
                step.mul_(tau)
                w.grad = step[:, :-1]
                b.grad = step[:, -1]
            for p in model.head.parameters():
                p.grad = grad_of[id(p)] * tau_theta
            if residuals:
                scalars["cg_residual"] = torch.stack(residuals).max()
            if failures:
                scalars["factor_failed"] = (torch.stack(failures) > 0).sum()
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        return StepResult(loss=loss.detach(), scalars=scalars)


def cholesky_solve_right(rows: torch.Tensor, chol: torch.Tensor) -> torch.Tensor:
    """``rows @ M^{-1}`` for M = L Lᵀ (L = ``chol``): two triangular solves from the right. On the CPU
    this is about twice as fast as ``torch.cholesky_solve`` on the transposed system (row-major
    right-hand sides are what LAPACK wants)."""
    y = torch.linalg.solve_triangular(chol.mT, rows, upper=True, left=False)  # y Lᵀ = rows
    return torch.linalg.solve_triangular(chol, y, upper=False, left=False)  # x L = y


def row_cg(matvec, rhs: torch.Tensor, iters: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Solve ``matvec(X) = rhs`` for a symmetric positive-definite operator acting on each ROW of X
    separately, one independent conjugate gradient per row (all rows advance together), ``iters``
    iterations from X = 0, no early stop (so no host synchronisation). ``rhs`` is not modified.
    Returns (X, the relative residual ‖rhs − matvec(X)‖_F / ‖rhs‖_F as tracked by the recursion).

    A zero row (p = 0) is guarded so that it stays zero instead of becoming 0/0 = NaN."""
    tiny = torch.finfo(rhs.dtype).tiny
    rhs_norm = torch.linalg.vector_norm(rhs)
    r = rhs
    rs = torch.linalg.vecdot(r, r, dim=1).unsqueeze(1)
    p, x = r, None
    for k in range(iters):
        ap = matvec(p)
        alpha = rs / torch.linalg.vecdot(p, ap, dim=1).unsqueeze(1).clamp_min_(tiny)
        x = p * alpha if x is None else x.addcmul_(p, alpha)
        r = torch.addcmul(r, ap, alpha, value=-1.0)
        if k + 1 < iters:
            rs_new = torch.linalg.vecdot(r, r, dim=1).unsqueeze(1)
            p = torch.addcmul(r, p, rs_new / rs.clamp_min_(tiny))
            rs = rs_new
    return x, torch.linalg.vector_norm(r) / rhs_norm.clamp_min(tiny)
