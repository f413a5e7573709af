"""Krylov eigen-solvers on a symmetric positive semi-definite operator given only by its matvec.

Two jobs, two tools:

* :func:`top_eigenpairs`: the k largest eigenvalues to a stated accuracy, with a residual norm per
  eigenvalue. ARPACK (scipy's ``eigsh``) does the work: on local Hessians it reached 1e-14 of λ_max
  where our own block Lanczos stopped at 1e-3 without warning, and it was 2-6x faster at width 256
  (k = 10, docs/results.md (c)). ARPACK's single-vector Krylov space cannot see a second
  copy of an exactly repeated eigenvalue (a linear block's ``I (x) Z^T Z``), so the result is checked
  by deflation: the largest eigenvalue orthogonal to the pairs found must not exceed the k-th, else
  it joins them and the check repeats.
* :func:`block_krylov`: a cheap picture of a spectrum too big to solve exactly. Block Lanczos from
  random vectors gives the stochastic-Lanczos-quadrature estimate of the spectral density (its Ritz
  weights); started inside the operator's range (from A X) it gives certified bounds: every Ritz
  value is a Rayleigh quotient of a vector orthogonal to the null space, so ``theta_max <= lambda_max``
  and ``theta_min >=`` the smallest nonzero eigenvalue, and ``theta_max / theta_min`` is a lower bound
  on the condition number (up to round-off in directions whose eigenvalues count as zero).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import scipy.sparse.linalg as sla
import torch

#: at most this many eigenvalues missed by ARPACK (repeated ones) are recovered by deflation.
MAX_DEFLATIONS = 64


class NotConverged(RuntimeError):
    """Some of the requested eigenvalues did not reach the tolerance; the message gives the residuals."""


@dataclass
class TopEigen:
    """The k largest eigenvalues (ascending), each with ``|A y - theta y|`` and whether that is
    within ``tol * |theta_max|`` (then an eigenvalue lies within the residual of theta)."""

    values: np.ndarray
    residuals: np.ndarray
    converged: np.ndarray
    tol: float
    matvecs: int

    def check(self) -> np.ndarray:
        """The values if all converged; otherwise :class:`NotConverged` naming the residuals."""
        if not self.converged.all():
            bad = ", ".join(
                f"{v:.6g} (residual {r:.2g})" for v, r, ok in zip(self.values, self.residuals, self.converged) if not ok
            )
            raise NotConverged(
                f"{(~self.converged).sum()} of {len(self.values)} eigenvalues did not converge to "
                f"tol={self.tol:g} x lambda_max: {bad}; raise maxiter or tol, or use method='exact'"
            )
        return self.values


def _as_numpy_operator(
    matvec: Callable[[torch.Tensor], torch.Tensor],
    n: int,
    like: torch.Tensor,
    project: np.ndarray | None,
    counter: list[int],
) -> sla.LinearOperator:
    """``matvec`` on (p, n) torch batches as a float64 scipy operator, optionally as P A P with
    P = I - Y Y^T (Y: orthonormal columns to deflate)."""

    def apply(V: np.ndarray) -> np.ndarray:
        V = V.reshape(n, -1)
        if project is not None:
            V = V - project @ (project.T @ V)
        counter[0] += V.shape[1]
        with torch.no_grad():
            out = matvec(torch.from_numpy(np.ascontiguousarray(V.T)).to(like)).reshape(V.shape[1], n)
        out = out.double().cpu().numpy().T
        if project is not None:
            out = out - project @ (project.T @ out)
        return out

    return sla.LinearOperator((n, n), matvec=lambda v: apply(v)[:, 0], matmat=apply, dtype=np.float64)


def top_eigenpairs(
    matvec: Callable[[torch.Tensor], torch.Tensor],
    n: int,
    like: torch.Tensor,
    k: int,
    tol: float = 1e-10,
    maxiter: int | None = None,
    seed: int = 0,
) -> TopEigen:
    """The k largest eigenvalues of the PSD operator ``matvec`` (on batches of flat vectors (p, n)).
    ``tol`` is raised to 10 eps of ``like``'s dtype: a float32 matvec cannot resolve more."""
    tol = max(tol, 10 * torch.finfo(like.dtype).eps)
    counter = [0]
    rng = np.random.default_rng(seed)
    if k >= n - 1 or n <= 64:  # ARPACK needs k < n - 1; tiny problems are cheaper dense
        A = _as_numpy_operator(matvec, n, like, None, counter).matmat(np.eye(n))
        values, vectors = np.linalg.eigh((A + A.T) / 2)
        values, vectors = values[-k:], vectors[:, -k:]
    else:
        values, vectors = _arpack(_as_numpy_operator(matvec, n, like, None, counter), n, k, tol, maxiter, rng)
        values, vectors = _deflate_check(matvec, n, like, k, values, vectors, tol, maxiter, rng, counter)
    op = _as_numpy_operator(matvec, n, like, None, counter)
    finite = np.isfinite(values)
    residuals = np.full(len(values), np.inf)
    if finite.any():
        AY = op.matmat(vectors[:, finite])
        residuals[finite] = np.linalg.norm(AY - vectors[:, finite] * values[finite], axis=0)
    scale = np.abs(values[finite]).max() if finite.any() else 0.0
    converged = finite & (residuals <= max(tol, 1e-13) * scale * 10)
    return TopEigen(
        values=np.maximum(values, 0.0), residuals=residuals, converged=converged, tol=tol, matvecs=counter[0]
    )


def _arpack(
    op: sla.LinearOperator, n: int, k: int, tol: float, maxiter: int | None, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """ARPACK's k largest; on no convergence the pairs it did converge, the rest NaN."""
    try:
        values, vectors = sla.eigsh(op, k=k, which="LA", tol=tol, maxiter=maxiter, v0=rng.standard_normal(n))
    except sla.ArpackNoConvergence as e:
        got = len(e.eigenvalues)
        values = np.concatenate([np.full(k - got, np.nan), np.sort(e.eigenvalues)])
        order = np.argsort(e.eigenvalues)
        vectors = np.concatenate([np.full((n, k - got), np.nan), e.eigenvectors[:, order]], axis=1)
    order = np.argsort(values)
    return values[order], vectors[:, order]


def _deflate_check(
    matvec,
    n: int,
    like: torch.Tensor,
    k: int,
    values: np.ndarray,
    vectors: np.ndarray,
    tol: float,
    maxiter: int | None,
    rng: np.random.Generator,
    counter: list[int],
) -> tuple[np.ndarray, np.ndarray]:
    """Recover eigenvalues ARPACK missed (second copies of repeated ones): while the largest
    eigenvalue of P A P (P projecting out the pairs found) exceeds the smallest found, swap it in."""
    if not np.isfinite(values).all():
        return values, vectors
    for _ in range(MAX_DEFLATIONS):
        op = _as_numpy_operator(matvec, n, like, vectors, counter)
        start = rng.standard_normal(n)
        start -= vectors @ (vectors.T @ start)
        try:
            mu, u = sla.eigsh(op, k=1, which="LA", tol=tol, maxiter=maxiter, v0=start)
        except sla.ArpackNoConvergence:
            return values, vectors  # cannot check: the residuals computed afterwards still hold
        if mu[0] <= values[0] * (1 + 10 * max(tol, 1e-13)) + 1e-300:
            return values, vectors
        u = u[:, 0] - vectors @ (vectors.T @ u[:, 0])
        u /= np.linalg.norm(u)
        values, vectors = np.concatenate([values[1:], mu]), np.concatenate([vectors[:, 1:], u[:, None]], axis=1)
        order = np.argsort(values)
        values, vectors = values[order], vectors[:, order]
    return values, vectors


def _orthonormalize(X: torch.Tensor, Q: torch.Tensor, fresh: Callable[[int], torch.Tensor]) -> torch.Tensor:
    """Columns of X made orthonormal to Q and to each other (block CGS2 + QR); a column that is
    (numerically) in the span already is replaced by a ``fresh`` one, so the space keeps growing."""
    for _ in range(3):
        norms = X.norm(dim=0)
        for _ in range(2):
            X = X - Q @ (Q.T @ X)
        q, r = torch.linalg.qr(X)
        lost = r.diagonal().abs() <= 1e-10 * norms.clamp_min(torch.finfo(X.dtype).tiny)
        if not lost.any():
            return q
        X = torch.where(lost, fresh(X.shape[1]), X)
    return q


def block_krylov(
    matvec: Callable[[torch.Tensor], torch.Tensor],
    shape: tuple[int, ...],
    like: torch.Tensor,
    k: int,
    dim: int,
    in_range: bool,
    seed: int = 0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Ritz values (ascending) of a ``dim``-dimensional block Krylov space (block size k) and their
    weights (summing to 1). Started from random vectors, the weights are the SLQ estimate of the
    spectral density (null space included); started ``in_range`` (from A X), the Ritz values are the
    bounds of the module docstring."""
    n = math.prod(shape)
    p = min(k, n)
    dim = min(n, dim)
    generator = torch.Generator().manual_seed(seed)

    def apply(X: torch.Tensor) -> torch.Tensor:
        return matvec(X.T.reshape(X.shape[1], *shape).to(like)).reshape(X.shape[1], n).T.double()

    def fresh(p: int) -> torch.Tensor:
        # drawn on the CPU (the same start on every device), then kept where the operator lives
        X = torch.randn(n, p, generator=generator, dtype=torch.float64).to(like.device)
        return apply(X) if in_range else X

    X = fresh(p)
    Q_buf, T = X.new_empty(n, dim), X.new_zeros(dim, dim)
    d = 0
    while d < dim and torch.isfinite(X).all():
        X = _orthonormalize(X[:, : dim - d], Q_buf[:, :d], fresh)
        Y = apply(X)
        new = slice(d, d + X.shape[1])
        Q_buf[:, new] = X
        d = new.stop
        C = Q_buf[:, :d].T @ Y  # the new columns of T = Q^T A Q
        T[:d, new], T[new, :d] = C, C.T
        X = Y
    if d == 0 or not torch.isfinite(T[:d, :d]).all():
        return torch.full((p,), float("nan"), dtype=torch.float64), torch.full((p,), 1.0 / p, dtype=torch.float64)
    theta, U = torch.linalg.eigh(T[:d, :d])
    return theta.clamp_min(0.0), U[:p].pow(2).mean(0)
