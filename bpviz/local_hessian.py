"""Per-block local Hessians: spectra of the Gauss-Newton matrix of each block's back-matching loss.

For block b with batch input Z (all samples) and output F_b(W; Z), the local Hessian is ``J^T J``
with J the Jacobian of vec F_b with respect to vec W (``wrt="weight"``, the Linear/Conv weight) or
vec Z (``wrt="input"``), BatchNorm in training mode so its coupling of samples counts. It is the
eta -> 0 limit of the exact Hessian of 1/2 ||F_b - Z~_b||^2 (research/seeds.md §1.4).

``method="exact"`` uses the structure instead of a dense Jacobian:

* weight: output unit (or conv channel) u depends only on its own row w_u, so ``J^T J`` is block
  diagonal with blocks ``J_u^T J_u``, ``J_u = D_u P`` (P: block inputs or im2col patches, D_u the
  activation slope times, with BN, the BN Jacobian ``(gamma/s)(I - 11^T/N - y y^T/N)``);
* input without BN: every sample is its own block ``J_i = diag(act'_i) W + S`` (S the skip);
* input with BN: samples are coupled, the problem is one dense eigenproblem of size batch x width;
  past ``EXACT_DENSE_MAX`` this raises :class:`ExactTooLarge`, which suggests ``method="lanczos"``.

Each small Gram matrix is diagonalised from its smaller side (``J J^T`` or ``J^T J``), in float64,
and the missing eigenvalues are exact zeros. ``method="lanczos"`` finds the k largest eigenvalues
from Jacobian-vector products, never forming J (ARPACK, with residuals; see :mod:`bpviz.krylov`).
The live report (:mod:`bpviz.hessian_report`) falls back, where an exact spectrum would be too slow
to refresh live, to certified bounds and an estimated density, and marks them so.
"""

from __future__ import annotations

import copy
from collections.abc import Callable

import torch
import torch.nn.functional as F

from .krylov import NotConverged, TopEigen, block_krylov, top_eigenpairs  # noqa: F401 (NotConverged: re-exported)
from .metrics import WRT
from .models import ACTIVATIONS, BN_EPS, Block, BlockNet

METHODS = ("exact", "lanczos")
#: largest side of the one dense eigenproblem a batch-coupled (BN) input Hessian needs.
EXACT_DENSE_MAX = 2048
#: largest per-sample input size for the conv input Hessian without BN (one eigenproblem a sample).
EXACT_PER_SAMPLE_MAX = 1024
#: largest Jacobian (elements) built at once; units are processed in chunks under it.
CHUNK_ELEMENTS = 1 << 24


class ExactTooLarge(ValueError):
    """The exact spectrum would be too big a problem; the message suggests ``method='lanczos'``."""


# --- argument checks ----------------------------------------------------------------------------
def check_args(model: BlockNet, x: torch.Tensor, block: int, wrt: str, method: str, k: int | None) -> Block:
    n_blocks = len(model.blocks)
    if isinstance(block, bool) or not isinstance(block, int) or not -n_blocks <= block < n_blocks:
        raise IndexError(f"block {block!r} is out of range: this model has blocks 0..{n_blocks - 1}")
    if wrt not in WRT:
        raise ValueError(f"wrt must be one of {WRT}, got {wrt!r}")
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    if k is not None and (isinstance(k, bool) or not isinstance(k, int) or k < 1):
        raise ValueError(f"k must be a positive integer or None, got {k!r}")
    if not isinstance(x, torch.Tensor) or x.dim() < 2:
        raise ValueError(f"x must be a batch tensor (batch, {', '.join(map(str, model.input_shape))})")
    return model.blocks[block]


def _block_input(model: BlockNet, x: torch.Tensor, block: int) -> torch.Tensor:
    param = model.head.linear.weight
    x = x.to(device=param.device, dtype=param.dtype)
    z = model.prepare(x)
    with torch.no_grad():
        for b in model.blocks[: block % len(model.blocks)]:
            z = b.local_forward(z)
    return z


# --- structured Jacobians -----------------------------------------------------------------------
def _patches(block: Block, z: torch.Tensor) -> torch.Tensor:
    """The rows the weight multiplies: block inputs (n, d), or conv im2col patches (n*H*W, C*9) of
    the (pooled, where the block pools) input."""
    if block.kind == "linear":
        return z
    cols = F.unfold(block.affine_input(z), kernel_size=3, padding=1)  # (n, C*9, H*W)
    return cols.transpose(1, 2).reshape(-1, cols.shape[1])


def _per_unit(t: torch.Tensor, kind: str) -> torch.Tensor:
    """(n, m) or (n, m, H, W) -> (m, N): unit u's values at all N batch positions."""
    return t.T if kind == "linear" else t.transpose(0, 1).reshape(t.shape[1], -1)


def _slopes(block: Block, z: torch.Tensor, bn_eps: float) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Per unit and position: the factor c (activation slope, times gamma/s with BN) and y_hat."""
    with torch.no_grad():
        g = block.affine_map(block.affine_input(z), block.weight)
        act_grad = ACTIVATIONS[block.activation][1]
        if block.bn is None:
            return _per_unit(act_grad(g), block.kind), None
        y_hat, std = block.normalize(g, bn_eps)
        gamma = block.channel_view(block.bn.weight)
        c = act_grad(y_hat * gamma + block.channel_view(block.bn.bias)) * gamma / std
        return _per_unit(c, block.kind), _per_unit(y_hat, block.kind)


def _weight_jacobians(block: Block, z: torch.Tensor, units: slice, bn_eps: float) -> torch.Tensor:
    """J_u = dF_{:,u}/dw_u for the given units: (units, N, fan_in)."""
    P = _patches(block, z)
    c, y_hat = _slopes(block, z, bn_eps)
    c = c[units]
    if y_hat is None:
        return c[:, :, None] * P[None]
    y = y_hat[units]
    n_pos = P.shape[0]
    centred = P - P.mean(0, keepdim=True)
    return c[:, :, None] * (centred[None] - y[:, :, None] * (y @ P / n_pos)[:, None, :])


def _gram_eigvalsh(J: torch.Tensor) -> torch.Tensor:
    """Eigenvalues of J_i^T J_i for a batch of J_i (B, r, c), from the smaller side, in float64."""
    J = J.detach().double()  # spectra are numbers to show, not part of any graph
    r, c = J.shape[-2:]
    gram = J @ J.transpose(-1, -2) if r < c else J.transpose(-1, -2) @ J
    eigs = torch.linalg.eigvalsh(gram).clamp_min(0.0)
    if r < c:
        eigs = torch.cat([eigs.new_zeros(eigs.shape[0], c - r), eigs], dim=1)
    return eigs.reshape(-1)


def _skip_matrix(block: Block, d_in: int, like: torch.Tensor) -> torch.Tensor | None:
    if not block.skip:
        return None
    if block.projection is None:
        return torch.eye(d_in, dtype=like.dtype, device=like.device)
    return block.projection.weight.detach()


def _input_jacobian_bn_linear(block: Block, z: torch.Tensor, bn_eps: float) -> torch.Tensor:
    """Dense (n*m, n*d) Jacobian of a Linear+BN block from its closed form."""
    n, d = z.shape
    c, y_hat = _slopes(block, z, bn_eps)  # (m, n)
    eye = torch.eye(n, dtype=z.dtype, device=z.device)
    proj = eye[None] - 1.0 / n - y_hat[:, :, None] * y_hat[:, None, :] / n  # (m, n, n)
    J = torch.einsum("ji,jik,jl->ijkl", c, proj, block.weight.detach())
    S = _skip_matrix(block, d, z)
    if S is not None:
        J = J + eye[:, None, :, None] * S[None, :, None, :]
    return J.reshape(n * c.shape[0], n * d)


def exact_weight_spectrum(block: Block, z: torch.Tensor, bn_eps: float = BN_EPS) -> torch.Tensor:
    """All eigenvalues of the block's weight local Hessian on inputs z (unsorted, float64), BN with
    ``bn_eps`` (0: as the paper analyses it, see ``bpviz.hessian_report.REPORT_BN_EPS``)."""
    m = block.weight.shape[0]
    n_pos, fan_in = _patches(block, z).shape
    chunk = max(1, CHUNK_ELEMENTS // (n_pos * fan_in))
    parts = [_gram_eigvalsh(_weight_jacobians(block, z, slice(s, s + chunk), bn_eps)) for s in range(0, m, chunk)]
    return torch.cat(parts)


def exact_input_spectrum(
    block: Block, z: torch.Tensor, dense_max: int = EXACT_DENSE_MAX, bn_eps: float = BN_EPS
) -> torch.Tensor:
    """All eigenvalues of its input local Hessian; :class:`ExactTooLarge` past ``dense_max`` (BN)."""
    n = z.shape[0]
    per_sample = z[0].numel()
    if block.bn is not None:
        per_sample_out = block.weight.shape[0] * (per_sample // z.shape[1])
        size = n * min(per_sample, per_sample_out)
        if size > dense_max or n * per_sample * n * per_sample_out > 4 * CHUNK_ELEMENTS:
            raise ExactTooLarge(
                f"the input Hessian of a BatchNorm block couples the whole batch: exact needs one "
                f"{size}x{size} eigenproblem (limit {dense_max}); use method='lanczos' with k=..., "
                f"or a smaller batch"
            )
        if block.kind == "linear":
            J = _input_jacobian_bn_linear(block, z, bn_eps)
        else:
            J = torch.func.jacfwd(lambda v: block.local_forward(v, bn_eps=bn_eps))(z).reshape(-1, z.numel())
        return _gram_eigvalsh(J[None])
    if block.kind == "linear":
        with torch.no_grad():
            slope = ACTIVATIONS[block.activation][1](block.affine_map(z, block.weight))  # (n, m)
            J = slope[:, :, None] * block.weight.detach()[None]
            S = _skip_matrix(block, z.shape[1], z)
            if S is not None:
                J = J + S[None]
        return _gram_eigvalsh(J)
    if per_sample > EXACT_PER_SAMPLE_MAX:
        raise ExactTooLarge(
            f"the conv input Hessian has one {per_sample}x{per_sample} eigenproblem per sample "
            f"(limit {EXACT_PER_SAMPLE_MAX}); use method='lanczos' with k=..."
        )

    def one_sample(zi: torch.Tensor) -> torch.Tensor:
        return block.local_forward(zi[None])[0]

    J = torch.func.vmap(torch.func.jacfwd(one_sample))(z)
    return _gram_eigvalsh(J.reshape(n, -1, per_sample))


# --- Lanczos ------------------------------------------------------------------------------------
def _gauss_newton_matvec(
    block: Block, z: torch.Tensor, wrt: str, bn_eps: float
) -> tuple[Callable[[torch.Tensor], torch.Tensor], torch.Tensor]:
    """v -> J^T J v for a batch of tangents (p, *primal.shape), from jvp and vjp only."""
    if wrt == "weight":
        primal = block.weight.detach()

        def f(w: torch.Tensor) -> torch.Tensor:
            return block.local_forward(z, w, bn_eps)
    else:
        primal = z

        def f(w: torch.Tensor) -> torch.Tensor:
            return block.local_forward(w, bn_eps=bn_eps)

    _, vjp_fn = torch.func.vjp(f, primal)

    def matvec(V: torch.Tensor) -> torch.Tensor:
        JV = torch.func.vmap(lambda v: torch.func.jvp(f, (primal,), (v,))[1])(V)
        return torch.func.vmap(vjp_fn)(JV)[0]

    return matvec, primal


def _top_eigen(block: Block, z: torch.Tensor, wrt: str, k: int, bn_eps: float = BN_EPS, **options) -> TopEigen:
    matvec, primal = _gauss_newton_matvec(block, z, wrt, bn_eps)
    shape = tuple(primal.shape)

    def flat_matvec(V: torch.Tensor) -> torch.Tensor:
        return matvec(V.reshape(V.shape[0], *shape)).reshape(V.shape[0], -1)

    return top_eigenpairs(flat_matvec, primal.numel(), primal, k, **options)


def krylov_spectrum(
    block: Block, z: torch.Tensor, wrt: str, k: int, dim: int, in_range: bool, bn_eps: float = BN_EPS
) -> tuple[torch.Tensor, torch.Tensor]:
    matvec, primal = _gauss_newton_matvec(block, z, wrt, bn_eps)
    with torch.no_grad():
        return block_krylov(matvec, tuple(primal.shape), primal, k, dim, in_range)


# --- public API -----------------------------------------------------------------------------------
def dense_reference_spectrum(model: BlockNet, x: torch.Tensor, block: int, wrt: str = "weight") -> torch.Tensor:
    """The slow oracle: autograd Jacobian of the whole block map, J^T J, eigvalsh, all in float64.

    Uses none of the structure ``local_hessian_spectrum`` relies on; tests and benchmarks compare
    against it.
    """
    blk = copy.deepcopy(check_args(model, x, block, wrt, "exact", None)).double()
    z = _block_input(model, x, block).double()
    if wrt == "weight":
        weight = blk.weight.detach()
        J = torch.func.jacrev(lambda w: blk.local_forward(z, w))(weight).reshape(-1, weight.numel())
    else:
        J = torch.func.jacrev(blk.local_forward)(z).reshape(-1, z.numel())
    return torch.linalg.eigvalsh(J.T @ J)


def local_hessian_spectrum(
    model: BlockNet,
    x: torch.Tensor,
    block: int,
    wrt: str = "weight",
    method: str = "exact",
    k: int | None = None,
    bn_eps: float = BN_EPS,
) -> torch.Tensor:
    """Eigenvalues (ascending, float64) of block ``block``'s local Hessian on the batch ``x``, BN
    with ``bn_eps`` (the report's ``REPORT_BN_EPS = 0`` for its numbers).

    ``exact``: the whole spectrum (weight numel, or batch size x block-input size values), or its k
    largest when ``k`` is given. ``lanczos``: the k largest (default 5) from Jacobian-vector products,
    converged to 1e-10 x lambda_max or :class:`NotConverged` (see :func:`local_hessian_top_eigen`).
    A model with NaN weights gives NaN eigenvalues.
    """
    blk = check_args(model, x, block, wrt, method, k)
    z = _block_input(model, x, block)
    size = blk.weight.numel() if wrt == "weight" else z.numel()
    finite = all(torch.isfinite(p).all() for p in blk.parameters()) and torch.isfinite(z).all()
    if method == "lanczos":
        if not finite:
            return torch.full((k or 5,), float("nan"), dtype=torch.float64)
        return torch.from_numpy(_top_eigen(blk, z, wrt, k or 5, bn_eps=bn_eps).check().copy())
    if not finite:
        eigs = torch.full((size,), float("nan"), dtype=torch.float64)
    else:
        if wrt == "weight":
            eigs = exact_weight_spectrum(blk, z, bn_eps)
        else:
            eigs = exact_input_spectrum(blk, z, bn_eps=bn_eps)
        eigs = torch.sort(eigs).values
    return eigs if k is None else eigs[-k:]


def local_hessian_top_eigen(
    model: BlockNet,
    x: torch.Tensor,
    block: int,
    wrt: str = "weight",
    k: int = 5,
    tol: float = 1e-10,
    maxiter: int | None = None,
) -> TopEigen:
    """The k largest eigenvalues from Jacobian-vector products (ARPACK, checked for missed repeated
    eigenvalues), each with its residual norm and whether it converged to ``tol`` x lambda_max."""
    blk = check_args(model, x, block, wrt, "lanczos", k)
    return _top_eigen(blk, _block_input(model, x, block), wrt, k, tol=tol, maxiter=maxiter)
