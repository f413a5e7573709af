"""The report takes BatchNorm without its eps, as the paper analyses it (research/seeds.md 1.5(d)): the
directions BN normalises away are then exact zeros. With the trained BN's eps = 1e-5 they keep a
curvature of about (eps / var)^2 lambda_max, which the report used to count as the smallest nonzero
eigenvalue, so that kappa measured eps. Checked against dense float64 Jacobians of a block map written
here from the formulas, not from bpviz.models."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from nets import two_block_net

from bpviz.config import RunConfig
from bpviz.hessian_report import ZERO_RTOL, local_hessian_report
from bpviz.local_hessian import dense_reference_spectrum, exact_weight_spectrum, local_hessian_spectrum
from bpviz.models import build_model


def _net(arch: str, skip: bool = False, shrink: float = 0.1):
    """A float64 BN net whose block 1 has small weights, so that its BN variances are ~shrink^2 and
    eps's curvature, (eps / var)^2 ~ 1e-6 of lambda_max, sits far above the report's zero floor (1e-9)."""
    model, shape = two_block_net(arch, activation="tanh", batch_norm=True, skip=skip, seed=4)
    with torch.no_grad():
        model.blocks[1].affine.weight.mul_(shrink)
    x = torch.randn(8, *shape, dtype=torch.float64, generator=torch.Generator().manual_seed(2)) + 0.2
    return model, x


def _block_without_eps(block, z: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """tanh(gamma (g - mean) / sqrt(var) + beta) [+ z], g the Linear or 3x3 Conv of z: BN with eps = 0."""
    bias = block.affine.bias.detach()
    if z.dim() == 2:
        g, dims, view = z @ w.T + bias, (0,), (1, -1)
    else:
        g, dims, view = F.conv2d(z, w, bias, padding=1), (0, 2, 3), (1, -1, 1, 1)
    centred = g - g.mean(dims, keepdim=True)
    y = centred / centred.pow(2).mean(dims, keepdim=True).sqrt()
    out = torch.tanh(y * block.bn.weight.detach().view(view) + block.bn.bias.detach().view(view))
    return out + z if block.skip else out


def _spectrum_without_eps(model, x, wrt: str) -> np.ndarray:
    block = model.blocks[1]
    z = model.block_inputs(x)[1].detach()
    w = block.weight.detach()
    if wrt == "weight":
        J = torch.func.jacrev(lambda v: _block_without_eps(block, z, v))(w).reshape(-1, w.numel())
    else:
        J = torch.func.jacrev(lambda v: _block_without_eps(block, v, w))(z).reshape(-1, z.numel())
    return torch.linalg.eigvalsh(J.T @ J).numpy()


def _kappa(eigs: np.ndarray) -> float:
    nonzero = eigs[eigs > ZERO_RTOL * eigs.max()]
    return float(nonzero.max() / nonzero.min())


@pytest.mark.parametrize("arch,skip", [("mlp", False), ("mlp", True), ("cnn", False), ("cnn", True)])
@pytest.mark.parametrize("wrt", ["weight", "input"])
def test_report_is_the_local_hessian_of_bn_without_eps(arch, skip, wrt):
    model, x = _net(arch, skip)
    stats = local_hessian_report(model, x, max_samples=None).get(1, wrt)
    reference = _spectrum_without_eps(model, x, wrt)
    assert stats.method == "exact"
    assert stats.lambda_max == pytest.approx(reference.max(), rel=1e-8)
    assert stats.condition_number == pytest.approx(_kappa(reference), rel=1e-6)
    assert stats.trace == pytest.approx(reference.sum(), rel=1e-8)
    assert stats.rank == int((reference > ZERO_RTOL * reference.max()).sum())
    ours = local_hessian_spectrum(model, x, 1, wrt, bn_eps=0.0).numpy()
    assert np.abs(ours - reference).max() <= 1e-10 * reference.max()


@pytest.mark.parametrize("arch", ["mlp", "cnn"])
@pytest.mark.parametrize("wrt", ["weight", "input"])
def test_with_eps_kappa_measures_eps(arch, wrt):
    """What the report showed before: the trained BN's eps turns the flat directions into the smallest
    nonzero eigenvalues, kappa orders of magnitude above the block's. For the weight, one per channel,
    below the curvature along that channel's own row (|J_u w_u|^2 / |w_u|^2, above the zero floor)."""
    model, x = _net(arch)
    stats = local_hessian_report(model, x, max_samples=None).get(1, wrt)
    with_eps = dense_reference_spectrum(model, x, 1, wrt).detach().numpy()
    floor = ZERO_RTOL * with_eps.max()
    assert _kappa(with_eps) > 100 * stats.condition_number
    if wrt == "input":
        return
    blk = model.blocks[1]
    w, z = blk.weight.detach(), model.block_inputs(x)[1].detach()
    channels = w.shape[0]
    assert int((with_eps > floor).sum()) == stats.rank + channels
    J = torch.func.jacrev(lambda v: blk.local_forward(z, v))(w).detach()  # (*output, channels, *fan_in)
    J = J.reshape(-1, channels, w[0].numel())
    per_channel = exact_weight_spectrum(blk, z).reshape(channels, -1).numpy()
    for u in range(channels):
        row = w[u].reshape(-1) / w[u].norm()
        along_row = (J[:, u] @ row).pow(2).sum().item()
        counted = per_channel[u][per_channel[u] > floor]
        assert floor < along_row and counted.min() <= along_row * (1 + 1e-9)


def test_bounds_past_the_dense_limit_are_for_the_same_matrix():
    """The Lanczos fallback (40 samples x width 40 > the report's 1024) bounds the eps-free spectrum:
    lambda_max from below, lambda_min from above, kappa from below."""
    cfg = RunConfig(depth=2, width=40, batch_norm=True, activation="tanh", seed=1, dtype="float64")
    model = build_model(cfg, (40,), 2)
    with torch.no_grad():
        model.blocks[1].affine.weight.mul_(0.1)
    x = torch.randn(40, 40, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    stats = local_hessian_report(model, x, max_samples=None).get(1, "input")
    assert stats.method == "lanczos"
    exact = local_hessian_spectrum(model, x, 1, "input", bn_eps=0.0).numpy()
    nonzero = exact[exact > ZERO_RTOL * exact.max()]
    assert 0.9 * exact.max() <= stats.lambda_max <= exact.max() * (1 + 1e-9)
    assert stats.lambda_min_nonzero >= nonzero.min() * (1 - 1e-9)
    assert stats.condition_number <= nonzero.max() / nonzero.min() * (1 + 1e-9)
    with_eps = local_hessian_spectrum(model, x, 1, "input").numpy()
    assert _kappa(with_eps) > 100 * stats.condition_number


def test_a_channel_constant_on_the_batch_keeps_bns_eps():
    """Without eps such a channel would divide 0 by 0: the report stays finite, and that channel's
    weight curvature is the trained BN's, while the other channels' lose eps."""
    model, x = _net("mlp", shrink=1.0)
    with torch.no_grad():
        model.blocks[1].affine.weight[0] = 0.0
    report = local_hessian_report(model, x, max_samples=None)
    for wrt in ("weight", "input"):
        stats = report.get(1, wrt)
        assert np.isfinite([stats.lambda_max, stats.condition_number, stats.trace]).all()
    blk, z = model.blocks[1], model.block_inputs(x)[1].detach()
    eps_free = exact_weight_spectrum(blk, z, bn_eps=0.0).reshape(blk.weight.shape[0], -1)
    with_eps = exact_weight_spectrum(blk, z).reshape(blk.weight.shape[0], -1)
    assert torch.isfinite(eps_free).all()
    assert torch.equal(eps_free[0], with_eps[0])
    assert not torch.equal(eps_free[1:], with_eps[1:])


def test_without_eps_only_channels_that_bn_normalises_lose_it():
    """A channel whose variance is under BN's eps (here ~1e-7, as round-off leaves a constant one) is
    not scale-invariant, so the eps-free BN keeps eps there; the others lose it."""
    model, _ = _net("mlp", shrink=1.0)
    g = torch.randn(8, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(5))
    g[:, 0] = 1.0 + 3e-4 * g[:, 0]
    var = g.var(0, unbiased=False)
    assert var[0] < 1e-5 < var[1:].min()
    _, std = model.blocks[1].normalize(g, 0.0)
    assert torch.allclose(std[0, 0], (var[0] + 1e-5).sqrt(), rtol=1e-12)
    assert torch.allclose(std[0, 1:], var[1:].sqrt(), rtol=1e-12)
