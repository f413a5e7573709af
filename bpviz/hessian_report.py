"""The live local-Hessian report: per block and per ``wrt``, lambda_max, the smallest nonzero
lambda, kappa, the trace and a histogram, exact where that can refresh live, else certified bounds.

The spectra come from :mod:`bpviz.local_hessian`. Where a BN block's input Hessian (one dense
problem of samples x width) passes ``REPORT_DENSE_MAX``, the row says ``method="lanczos"``: its
lambda_max and kappa are lower bounds, lambda_min an upper bound (a Krylov space inside the operator's
range, :mod:`bpviz.krylov`), its trace, rank and histogram stochastic-Lanczos-quadrature estimates.
BatchNorm is taken without its epsilon (``REPORT_BN_EPS``), as the paper analyses it.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field, replace

import numpy as np
import torch

from .local_hessian import (
    ExactTooLarge,
    check_args,
    exact_input_spectrum,
    exact_weight_spectrum,
    krylov_spectrum,
)
from .metrics import WRT, cond_name, lambda_max_name
from .models import Block, BlockNet

#: the report's own, tighter limit: it must stay fast enough to refresh live. 1024 covers the
#: dashboard's default probe (32 samples) for BN blocks up to width 32, so their input-Hessian κ is
#: exact there: on a 4-block BN tanh MLP of width 32 the report took 0.49 s exact vs 1.71 s with the
#: Lanczos fallback (which had given κ ≈ 3e2 where the exact value is 2e6–6e8).
REPORT_DENSE_MAX = 1024
#: Krylov dimension of the report's fallback (bounds and a density estimate, on a fixed budget).
REPORT_KRYLOV_DIM = 48
#: BatchNorm's epsilon in the report's local Hessians: none, as in the paper's analysis (research/seeds.md
#: 1.5(d)), where the directions BN normalises away (each channel's weight row; the input scaled per
#: channel) are exact zeros. The trained BN's eps (``models.BN_EPS`` = 1e-5) leaves them a curvature of
#: up to about (eps / var)^2 lambda_max, which, where a channel's variance is small, posed as the
#: smallest nonzero eigenvalue: kappa then measured eps and that variance, not the block
#: (tests/test_bn_scale.py). The other eigenvalues move by about eps / var.
REPORT_BN_EPS = 0.0
#: relative floor under which the report counts an eigenvalue as zero (see ``_zero_tol``).
ZERO_RTOL = 1e-9
#: fixed log10 bin edges of the report's eigenvalue histograms (the ideal local Hessian has all
#: eigenvalues at 1, i.e. at log10 = 0); values outside fall into the end bins.
HIST_EDGES = np.linspace(-6.0, 4.0, 41)


@dataclass
class SpectrumStats:
    """What the dashboard plots for one block and one ``wrt``."""

    block: int
    wrt: str
    #: "exact", or "lanczos" for a spectrum too large to solve live: then lambda_max is a lower bound,
    #: lambda_min_nonzero an upper bound and condition_number a lower bound (kappa >= it), certified;
    #: trace, rank and histogram are stochastic-Lanczos-quadrature estimates.
    method: str
    size: int  # number of eigenvalues of the full matrix
    lambda_max: float
    lambda_min_nonzero: float
    condition_number: float
    trace: float
    rank: int
    hist_counts: list[float]  # per HIST_EDGES bin; zeros are counted in ``size - rank``, not here
    #: eigenvalues above round-off that the zero floor (``ZERO_RTOL``) counts as zeros (exact rows): where
    #: this is not 0 the spectrum goes on below the floor, and kappa without the floor would be larger
    below_floor: int = 0

    @property
    def estimated(self) -> bool:
        """True when the numbers are bounds and estimates, not the exact spectrum's."""
        return self.method != "exact"

    @property
    def kappa_is_bound(self) -> bool:
        """True when condition_number is only a lower bound: a Lanczos row, or a spectrum that goes on
        below the zero floor (the floor then chose lambda_min_nonzero)."""
        return self.estimated or self.below_floor > 0


def _roundoff(lmax: float, dim: int, source_dtype: torch.dtype) -> float:
    """The size of a zero eigenvalue after round-off: of the source precision (J in it; a Gram's
    eigenvalues err by its square) and of float64's eigensolver."""
    eps = torch.finfo(source_dtype).eps
    return lmax * max((dim * eps) ** 2, dim * torch.finfo(torch.float64).eps)


def _zero_tol(lmax: float, dim: int, source_dtype: torch.dtype) -> float:
    """Eigenvalues below this count as zero: round-off, and at least ``ZERO_RTOL * lmax``, so that
    kappa stays a number one can compare (those between the two are ``below_floor``)."""
    return max(_roundoff(lmax, dim, source_dtype), ZERO_RTOL * lmax)


def below_floor(eigs: np.ndarray, dim: int, source_dtype: torch.dtype) -> int:
    """How many eigenvalues lie between round-off and the zero floor: counted as zeros, though the
    spectrum goes on there (kappa is then a lower bound)."""
    lmax = float(eigs.max(initial=0.0))
    return int(((eigs > _roundoff(lmax, dim, source_dtype)) & (eigs <= _zero_tol(lmax, dim, source_dtype))).sum())


def _stats(
    block: int, wrt: str, method: str, size: int, eigs: np.ndarray, weights: np.ndarray, dim: int, dtype: torch.dtype
) -> SpectrumStats:
    if not np.isfinite(eigs).all():
        nan = float("nan")
        return SpectrumStats(block, wrt, method, size, nan, nan, nan, nan, 0, [nan] * (len(HIST_EDGES) - 1))
    lmax = float(eigs.max(initial=0.0))
    nonzero = eigs > _zero_tol(lmax, dim, dtype)
    lmin = float(eigs[nonzero].min()) if nonzero.any() else float("nan")
    logs = np.clip(np.log10(eigs[nonzero]), HIST_EDGES[0], HIST_EDGES[-1])
    counts, _ = np.histogram(logs, bins=HIST_EDGES, weights=weights[nonzero] * size)
    return SpectrumStats(
        block=block,
        wrt=wrt,
        method=method,
        size=size,
        lambda_max=lmax,
        lambda_min_nonzero=lmin,
        condition_number=lmax / lmin if nonzero.any() else float("nan"),
        trace=float((eigs * weights).sum() * size),
        rank=int(round(float(weights[nonzero].sum() * size))),
        hist_counts=counts.tolist(),
        below_floor=below_floor(eigs, dim, dtype) if method == "exact" else 0,
    )


def _bounded_stats(
    b: int, wrt: str, blk: Block, z: torch.Tensor, k: int, size: int, dim: int, dtype: torch.dtype
) -> SpectrumStats:
    """The report's fallback: the density, trace and rank from SLQ (random start), and lambda_max,
    lambda_min and kappa from a Krylov space inside the range (certified bounds, see bpviz.krylov)."""
    theta, w = krylov_spectrum(blk, z, wrt, k, REPORT_KRYLOV_DIM, in_range=False, bn_eps=REPORT_BN_EPS)
    stats = _stats(b, wrt, "lanczos", size, theta.cpu().numpy(), w.cpu().numpy(), dim, dtype)
    ritz = krylov_spectrum(blk, z, wrt, k, REPORT_KRYLOV_DIM, in_range=True, bn_eps=REPORT_BN_EPS)[0].cpu().numpy()
    if not np.isfinite(ritz).all() or ritz.max(initial=0.0) <= 0:
        return stats
    lmax = float(ritz.max())
    lmin = float(ritz[ritz > _zero_tol(lmax, dim, dtype)].min())
    return replace(stats, lambda_max=lmax, lambda_min_nonzero=lmin, condition_number=lmax / lmin)


@dataclass
class LocalHessianReport:
    """Spectral summary of every block's weight and input local Hessian on one batch."""

    stats: list[SpectrumStats]
    n_samples: int  # samples the Hessians were computed on
    batch_size: int  # samples passed in; larger than n_samples when the report subsampled
    seconds: float
    hist_edges: list[float] = field(default_factory=lambda: HIST_EDGES.tolist())

    @property
    def subsampled(self) -> bool:
        return self.n_samples < self.batch_size

    def get(self, block: int, wrt: str) -> SpectrumStats:
        for s in self.stats:
            if s.block == block and s.wrt == wrt:
                return s
        raise KeyError(f"no stats for block {block}, wrt {wrt!r}")

    def to_dict(self) -> dict:
        return {**asdict(self), "subsampled": self.subsampled}

    def named_values(self) -> dict[str, float]:
        """Every block's kappa and lambda_max under its glossary name (``bpviz.metrics``); a bound gets
        its own name, so a ``cond/`` number is always exact."""
        values = {}
        for s in self.stats:
            values[cond_name(s.wrt, s.block, bound=s.kappa_is_bound)] = s.condition_number
            values[lambda_max_name(s.wrt, s.block, bound=s.estimated)] = s.lambda_max
        return values


def probe_size(model: BlockNet, x: torch.Tensor, batch_size: int, smallest: int = 32, largest: int = 64) -> int:
    """How many samples the live report should use: the training batch size, so that BN's statistics
    are those of a training batch, capped at ``largest`` for speed; fewer where a BN block's exact
    input spectrum would pass ``REPORT_DENSE_MAX``, but not fewer than ``smallest`` (BN statistics
    over a handful of samples would misrepresent training; that block's numbers are then bounds)."""
    n = min(batch_size, largest, x.shape[0])
    with torch.no_grad():
        zs = model.block_inputs(x[:1].to(device=model.head.linear.weight.device, dtype=model.head.linear.weight.dtype))
    for blk, z in zip(model.blocks, zs):
        if blk.bn is not None:
            per_sample = z[0].numel()
            side = min(per_sample, blk.weight.shape[0] * (per_sample // z.shape[1]))
            n = min(n, max(REPORT_DENSE_MAX // side, min(smallest, batch_size)))
    return max(1, n)


def local_hessian_report(
    model: BlockNet, x: torch.Tensor, max_samples: int | None = 32, k: int = 8
) -> LocalHessianReport:
    """For every block and both ``wrt``: lambda_max, smallest nonzero lambda, condition number, trace
    and a histogram of log10 eigenvalues.

    The batch is cut to its first ``max_samples`` samples (the report says so) to keep the cost
    fit for live refresh. Exact spectra are used where they fit; otherwise (the input Hessian of a
    BN block past ``REPORT_DENSE_MAX``) bounds and estimates, marked ``method="lanczos"``.
    """
    # cuDNN runs float32 convolutions in TF32 (10-bit mantissa) unless told not to: fine for training,
    # not for numbers labelled exact or certified as bounds
    with torch.backends.cudnn.flags(
        enabled=torch.backends.cudnn.enabled,
        benchmark=torch.backends.cudnn.benchmark,
        deterministic=torch.backends.cudnn.deterministic,
        allow_tf32=False,
    ):
        return _report(model, x, max_samples, k)


def _report(model: BlockNet, x: torch.Tensor, max_samples: int | None, k: int) -> LocalHessianReport:
    start = time.perf_counter()
    check_args(model, x, 0, "weight", "exact", k)
    batch = x.shape[0]
    if max_samples is not None:
        x = x[:max_samples]
    dtype = model.head.linear.weight.dtype
    zs = model.block_inputs(x.to(device=model.head.linear.weight.device, dtype=dtype))
    stats = []
    for b, blk in enumerate(model.blocks):
        z = zs[b]
        finite = torch.isfinite(z).all() and all(torch.isfinite(p).all() for p in blk.parameters())
        for wrt in WRT:
            size = blk.weight.numel() if wrt == "weight" else z.numel()
            dim = z.shape[0] if wrt == "weight" else z[0].numel()
            method = "exact"
            if not finite:
                eigs, weights = np.full(size, np.nan), np.full(size, 1.0 / size)
            else:
                try:
                    if wrt == "weight":
                        eigs_t = exact_weight_spectrum(blk, z, REPORT_BN_EPS)
                    else:
                        eigs_t = exact_input_spectrum(blk, z, REPORT_DENSE_MAX, REPORT_BN_EPS)
                    eigs, weights = eigs_t.cpu().numpy(), np.full(size, 1.0 / size)
                except ExactTooLarge:
                    stats.append(_bounded_stats(b, wrt, blk, z, k, size, dim, dtype))
                    continue
            stats.append(_stats(b, wrt, method, size, eigs, weights, dim, dtype))
    return LocalHessianReport(stats=stats, n_samples=x.shape[0], batch_size=batch, seconds=time.perf_counter() - start)
