import copy
import itertools
import math

import numpy as np
import pytest
import torch
from nets import two_block_net

from bpviz.config import RunConfig
from bpviz.hessian_report import HIST_EDGES, REPORT_BN_EPS, local_hessian_report
from bpviz.local_hessian import (
    ExactTooLarge,
    NotConverged,
    dense_reference_spectrum,
    local_hessian_spectrum,
    local_hessian_top_eigen,
)
from bpviz.models import build_model

GRID = list(
    itertools.product(
        ["tanh", "relu", "sigmoid", "linear"],
        [False, True],
        [False, True],
        ["gaussian", "xavier", "kaiming", "orthogonal"],
    )
)


def rel_err(a, b):
    return ((a - b).abs().max() / b.abs().max()).item()


@pytest.mark.parametrize("act,bn,skip,init", GRID)
def test_exact_matches_dense_autograd_reference(make_net, act, bn, skip, init):
    # widths 4 -> 5 -> 5 -> 3: block 0 has a projection skip, block 1 an identity skip
    model, x, _ = make_net(n=6, depth=2, width=5, activation=act, batch_norm=bn, skip=skip, init=init, init_std=0.6)
    for block in (0, 1):
        for wrt in ("weight", "input"):
            exact = local_hessian_spectrum(model, x, block, wrt)
            dense = dense_reference_spectrum(model, x, block, wrt)
            assert exact.shape == dense.shape
            assert torch.all(exact[1:] >= exact[:-1])  # ascending
            assert rel_err(exact, dense) <= 1e-8, (block, wrt)


@pytest.mark.parametrize("bn,skip", [(False, False), (False, True), (True, False), (True, True)])
def test_exact_conv_matches_dense_reference(bn, skip):
    cfg = RunConfig(dataset="digits", arch="cnn", depth=2, width=3, batch_norm=bn, skip=skip, dtype="float64", seed=2)
    model = build_model(cfg, (2, 4, 4), 3)
    x = torch.randn(3, 2, 4, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    for block in (0, 1):
        for wrt in ("weight", "input"):
            assert (
                rel_err(local_hessian_spectrum(model, x, block, wrt), dense_reference_spectrum(model, x, block, wrt))
                <= 1e-8
            )


def _train(model, x, y, steps=30, lr=0.5):
    """SGD steps, so that weights, BN's gamma and beta and the activation pattern leave their init."""
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    for _ in range(steps):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        opt.step()


@pytest.mark.parametrize(
    "arch,bn,skip",
    [
        ("mlp", False, False),
        ("mlp", True, False),
        ("mlp", False, True),
        ("mlp", True, True),
        ("cnn", False, False),
        ("cnn", True, True),
    ],
)
def test_exact_and_report_match_dense_after_training(arch, bn, skip):
    model, shape = two_block_net(arch, activation="relu", batch_norm=bn, skip=skip, seed=3)
    g = torch.Generator().manual_seed(1)
    x = torch.randn(8, *shape, dtype=torch.float64, generator=g) + 0.3
    y = torch.randint(0, 3, (8,), generator=g)
    _train(model, x, y)
    if bn:
        assert not torch.allclose(model.blocks[1].bn.weight, torch.ones_like(model.blocks[1].bn.weight))
    report = local_hessian_report(model, x, max_samples=None)
    for block in (0, 1):
        for wrt in ("weight", "input"):
            dense = dense_reference_spectrum(model, x, block, wrt)
            assert rel_err(local_hessian_spectrum(model, x, block, wrt), dense) <= 1e-8, (block, wrt)
            d = dense.detach().numpy()
            nonzero = d[d > 1e-9 * d.max()]
            stats = report.get(block, wrt)
            assert stats.method == "exact"
            assert stats.condition_number == pytest.approx(nonzero.max() / nonzero.min(), rel=1e-2), (block, wrt)


def test_spectrum_lengths(make_net):
    model, x, _ = make_net(n=6, depth=2, width=5)
    assert local_hessian_spectrum(model, x, 1, "weight").numel() == 25
    assert local_hessian_spectrum(model, x, 1, "input").numel() == 6 * 5
    assert local_hessian_spectrum(model, x, 0, "input").numel() == 6 * 4
    top = local_hessian_spectrum(model, x, 1, "weight", k=3)
    assert torch.equal(top, local_hessian_spectrum(model, x, 1, "weight")[-3:])


@pytest.mark.parametrize(
    "act,bn,wrt",
    [
        ("tanh", False, "weight"),
        ("tanh", False, "input"),
        ("linear", False, "weight"),
        ("relu", True, "weight"),
        ("tanh", True, "input"),
    ],
)
def test_lanczos_top_k_agrees_with_exact(make_net, act, bn, wrt):
    # a linear block's weight Hessian is I (x) Z^T Z: every eigenvalue repeated, which block Lanczos must resolve
    model, x, _ = make_net(n=24, d_in=8, depth=2, width=8, activation=act, batch_norm=bn, seed=3)
    exact = local_hessian_spectrum(model, x, 1, wrt, "exact")
    top = local_hessian_spectrum(model, x, 1, wrt, "lanczos", k=5)
    assert top.shape == (5,)
    assert rel_err(top, exact[-5:]) <= 1e-4


@pytest.mark.parametrize("act,wrt,width", [("tanh", "input", 64), ("tanh", "weight", 64), ("linear", "input", 8)])
def test_top_eigen_k10_matches_dense_with_clustered_and_repeated_eigenvalues(act, wrt, width):
    """k = 10 at the top of spectra whose top eigenvalues sit within 1e-4 of lambda_max of each other
    (tanh) or repeat exactly (a linear block's input Hessian: W^T W once per sample, which a
    single-vector Krylov space cannot resolve without the deflation check)."""
    cfg = RunConfig(depth=3, width=width, activation=act, init="xavier", dtype="float64")
    model = build_model(cfg, (width,), 10)
    x = torch.randn(128, width, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    exact = local_hessian_spectrum(model, x, 1, wrt).numpy()
    top = local_hessian_top_eigen(model, x, 1, wrt, k=10)
    assert top.converged.all() and top.values.shape == (10,)
    assert np.abs(top.values - exact[-10:]).max() <= 1e-8 * exact[-1]
    assert (top.residuals <= 1e-9 * exact[-1]).all()
    assert np.allclose(local_hessian_spectrum(model, x, 1, wrt, "lanczos", k=10).numpy(), top.values, rtol=0, atol=0)


def test_unconverged_eigenvalues_are_never_returned_as_converged(make_net):
    model, x, _ = make_net(n=64, d_in=16, depth=2, width=16, activation="tanh", seed=1)
    top = local_hessian_top_eigen(model, x, 1, "input", k=6, maxiter=1)
    assert not top.converged.all()
    with pytest.raises(NotConverged, match=r"did not converge to tol=1e-10 x lambda_max: .*residual"):
        top.check()
    exact = local_hessian_spectrum(model, x, 1, "input").numpy()
    # what is marked converged is within its residual of an eigenvalue
    for value, residual, ok in zip(top.values, top.residuals, top.converged):
        if ok:
            assert np.abs(exact - value).min() <= residual * (1 + 1e-6) + 1e-12


def test_orthogonal_init_makes_a_linear_blocks_input_hessian_the_identity(make_net):
    model, x, _ = make_net(n=16, d_in=12, depth=3, width=12, activation="linear", init="orthogonal", seed=5)
    eigs = local_hessian_spectrum(model, x, 1, "input")
    assert torch.allclose(eigs, torch.ones_like(eigs), atol=1e-12)
    report = local_hessian_report(model, x)
    assert report.get(1, "input").condition_number == pytest.approx(1.0, abs=1e-10)
    # a Gaussian init of the same shape is far from it (Marchenko-Pastur spread)
    gauss, x, _ = make_net(
        n=16, d_in=12, depth=3, width=12, activation="linear", init="gaussian", init_std=12**-0.5, seed=5
    )
    assert local_hessian_report(gauss, x).get(1, "input").condition_number > 10


def test_batch_norm_removes_the_input_mean_spike_from_the_weight_hessian():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(64, 8, generator=g, dtype=torch.float64) + 3.0  # inputs with a large mean
    kappa = {}
    for bn in (False, True):
        model = build_model(RunConfig(depth=1, width=6, activation="linear", batch_norm=bn, dtype="float64"), (8,), 2)
        eigs = local_hessian_spectrum(model, x, 0, "weight")
        kappa[bn] = local_hessian_report(model, x, max_samples=None).get(0, "weight").condition_number
        if bn:  # BN makes every row scale-invariant: exactly one zero eigenvalue per unit
            assert int((eigs < 1e-9 * eigs.max()).sum()) == 6
        else:  # the mean spike: one eigenvalue per unit near n * |mean|^2
            assert eigs.max().item() > 0.5 * 64 * 8 * 9
    assert kappa[True] < kappa[False] / 5


def test_bn_weight_hessian_matches_the_centred_covariance_closed_form():
    # research/seeds.md 1.5(d): H_wj = (n gamma^2 / sigma^2) [S - S w w^T S / (w^T S w)], S the centred covariance
    g = torch.Generator().manual_seed(1)
    x = (
        torch.randn(50, 5, generator=g, dtype=torch.float64) * torch.tensor([1.0, 2, 3, 0.5, 1], dtype=torch.float64)
        + 2
    )
    model = build_model(RunConfig(depth=1, width=3, activation="linear", batch_norm=True, dtype="float64"), (5,), 2)
    with torch.no_grad():
        model.blocks[0].bn.weight.copy_(torch.tensor([0.5, 1.0, 2.0]))
    eigs = local_hessian_spectrum(model, x, 0, "weight")
    n = x.shape[0]
    xc = x - x.mean(0)
    cov = xc.T @ xc / n
    expected = []
    for w, gamma in zip(model.blocks[0].weight.detach(), model.blocks[0].bn.weight.detach()):
        var = w @ cov @ w
        cw = cov @ w
        expected.append(torch.linalg.eigvalsh(n * gamma**2 / var * (cov - torch.outer(cw, cw) / var)))
    expected = torch.sort(torch.cat(expected)).values
    assert ((eigs - expected).abs().max() / expected.max()).item() < 1e-4  # BN's eps=1e-5 is the only difference


def test_small_residual_branches_cluster_the_input_hessian_near_one(make_net):
    model, x, _ = make_net(n=16, d_in=10, depth=3, width=10, skip=True, init="gaussian", init_std=0.01)
    eigs = local_hessian_spectrum(model, x, 1, "input")
    eps = torch.linalg.matrix_norm(model.blocks[1].weight, ord=2).item()  # |J_F| <= |W| for tanh
    assert eigs.min() >= (1 - eps) ** 2 - 1e-12 and eigs.max() <= (1 + eps) ** 2 + 1e-12
    assert eps < 0.1
    plain, x, _ = make_net(n=16, d_in=10, depth=3, width=10, skip=False, init="gaussian", init_std=0.01)
    assert local_hessian_spectrum(plain, x, 1, "input").max() < 0.1  # without the skip: far from 1


def test_report_numbers_agree_with_the_spectrum(make_net):
    model, x, _ = make_net(n=20, d_in=6, depth=3, width=6, activation="relu", init="kaiming")
    report = local_hessian_report(model, x, max_samples=None)
    assert report.n_samples == 20 and not report.subsampled
    assert len(report.stats) == 3 * 2 and len(report.hist_edges) == len(HIST_EDGES)
    for s in report.stats:
        eigs = local_hessian_spectrum(model, x, s.block, s.wrt).numpy()
        nonzero = eigs[eigs > 1e-10 * eigs.max()]
        assert s.method == "exact" and not s.estimated
        assert s.lambda_max == pytest.approx(eigs.max(), rel=1e-12)
        assert s.lambda_min_nonzero == pytest.approx(nonzero.min(), rel=1e-9)
        assert s.condition_number == pytest.approx(nonzero.max() / nonzero.min(), rel=1e-9)
        assert s.trace == pytest.approx(eigs.sum(), rel=1e-10)
        assert s.rank == len(nonzero) and sum(s.hist_counts) == pytest.approx(len(nonzero))
    # trace of J^T J is |J|_F^2: independent check for a Linear block w.r.t. its weight
    z = model.block_inputs(x)[1]
    slope = (model.blocks[1].affine(z) > 0).double()
    assert report.get(1, "weight").trace == pytest.approx(((slope.T @ z.pow(2)).sum()).item(), rel=1e-10)


def test_report_subsamples_and_says_so(make_net):
    model, x, _ = make_net(n=40, depth=2, width=4)
    report = local_hessian_report(model, x, max_samples=16)
    assert report.subsampled and report.n_samples == 16 and report.batch_size == 40
    assert report.to_dict()["subsampled"] is True


def test_report_gives_the_exact_bn_input_condition_number_at_the_dashboards_default_sizes():
    """32 probe samples x width 32 (the deep-tanh-bn preset's blocks): the report must not estimate;
    its κ matches a dense float64 autograd reference to 1 % (the Lanczos fallback was ~1e6x off)."""
    cfg = RunConfig(depth=2, width=32, batch_norm=True, activation="tanh", dtype="float64")
    model = build_model(cfg, (16,), 4)
    x = torch.randn(32, 16, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    stats = local_hessian_report(model, x, max_samples=32).get(1, "input")
    assert stats.method == "exact" and not stats.estimated
    dense = dense_reference_spectrum(model, x, 1, "input").detach().numpy()
    nonzero = dense[dense > 1e-9 * dense.max()]
    assert stats.condition_number == pytest.approx(nonzero.max() / nonzero.min(), rel=1e-2)
    assert stats.lambda_min_nonzero == pytest.approx(nonzero.min(), rel=1e-2)


def test_exact_refuses_a_too_large_bn_input_hessian():
    model = build_model(RunConfig(depth=2, width=48, batch_norm=True), (48,), 2)
    x = torch.randn(64, 48, generator=torch.Generator().manual_seed(0))
    with pytest.raises(ExactTooLarge, match=r"one 3072x3072 eigenproblem \(limit 2048\); use method='lanczos'"):
        local_hessian_spectrum(model, x, 1, "input")


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("trained", [False, True])
def test_report_past_its_dense_limit_gives_certified_bounds(seed, trained):
    """Past the report's dense limit (40 samples x width 40 > 1024) the report's lambda_max, lambda_min
    and kappa for a BN block's input Hessian are bounds, checked against the exact spectrum (which
    the exact solver, limit 2048, still computes): kappa is never above the true one ("kappa >= ...")."""
    cfg = RunConfig(depth=2, width=40, batch_norm=True, seed=seed, dtype="float64")
    model = build_model(cfg, (40,), 2)
    x = torch.randn(40, 40, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    if trained:
        _train(model, x, (x[:, 0] > 0).long(), steps=20)
    report = local_hessian_report(model, x, max_samples=None)
    stats = report.get(1, "input")
    assert stats.method == "lanczos" and stats.estimated
    assert sum(stats.hist_counts) == pytest.approx(stats.rank, rel=1e-6)
    assert report.get(1, "weight").method == "exact"
    exact = local_hessian_spectrum(model, x, 1, "input", bn_eps=REPORT_BN_EPS).numpy()  # the matrix it bounds
    nonzero = exact[exact > 1e-9 * exact.max()]
    assert 0.9 * exact.max() <= stats.lambda_max <= exact.max() * (1 + 1e-9)
    assert stats.lambda_min_nonzero >= nonzero.min() * (1 - 1e-9)
    assert stats.condition_number <= nonzero.max() / nonzero.min() * (1 + 1e-9)


@pytest.mark.parametrize(
    "kwargs,error,match",
    [
        (dict(block=2), IndexError, r"blocks 0\.\.1"),
        (dict(block=-3), IndexError, r"blocks 0\.\.1"),
        (dict(wrt="bias"), ValueError, r"wrt must be one of \('weight', 'input'\)"),
        (dict(method="svd"), ValueError, r"method must be one of \('exact', 'lanczos'\)"),
        (dict(k=0), ValueError, "k must be a positive integer"),
    ],
)
def test_bad_arguments_say_what_is_allowed(make_net, kwargs, error, match):
    model, x, _ = make_net(depth=2, width=4)
    args = dict(block=0, wrt="weight", method="exact", k=None) | kwargs
    with pytest.raises(error, match=match):
        local_hessian_spectrum(model, x, **args)


def test_wrong_input_shape_is_refused(make_net):
    model, x, _ = make_net(depth=2, width=4)
    with pytest.raises(ValueError, match=r"expects \(batch, 4\)"):
        local_hessian_spectrum(model, torch.randn(5, 3), 0)
    with pytest.raises(ValueError, match="batch tensor"):
        local_hessian_spectrum(model, torch.randn(4), 0)


@pytest.mark.parametrize("method", ["exact", "lanczos"])
def test_nan_weights_give_nan_eigenvalues(make_net, method):
    model, x, _ = make_net(depth=2, width=4, batch_norm=True)
    with torch.no_grad():
        model.blocks[0].weight[0, 0] = float("nan")
    eigs = local_hessian_spectrum(model, x, 1, "weight", method, k=2)
    assert torch.isnan(eigs).all()
    report = local_hessian_report(model, x)
    assert math.isnan(report.get(1, "input").lambda_max) and np.isnan(report.get(0, "weight").hist_counts).all()


def test_float32_model_works_and_is_close_to_float64(make_net):
    model64, x, _ = make_net(n=16, depth=2, width=6)
    model32 = copy.deepcopy(model64).float()
    a = local_hessian_spectrum(model32, x.float(), 1, "weight")
    b = local_hessian_spectrum(model64, x, 1, "weight")
    assert rel_err(a, b) < 1e-5


def test_mean_spike_share_uses_the_exact_weight_spectra(make_net):
    """The lesson's no-BN spectrum is the exact solver's; its centred one is the Gram of the centred
    input per unit, checked here with a dense float64 computation."""
    from bpviz.lessons import condition_number, mean_spike_share

    plain, x, _ = make_net(n=40, d_in=6, depth=3, width=5, activation="relu", init="kaiming", seed=4)
    bn, _, _ = make_net(n=40, d_in=6, depth=3, width=5, activation="relu", init="kaiming", batch_norm=True, seed=4)
    rows = mean_spike_share(plain, bn, x)
    assert [r["block"] for r in rows] == [1, 2]
    for r in rows:
        b = r["block"]
        assert r["kappa no BN"] == pytest.approx(
            condition_number(local_hessian_spectrum(plain, x, b, "weight")), rel=1e-9
        )
        kappa_bn = condition_number(local_hessian_spectrum(bn, x, b, "weight", bn_eps=REPORT_BN_EPS))
        assert r["kappa BN"] == pytest.approx(kappa_bn, rel=1e-9)
        z = plain.block_inputs(x)[b].double()
        slope = (plain.blocks[b].affine(z) > 0).double()
        zc = z - z.mean(0)
        dense = torch.block_diag(
            *[(zc * slope[:, u : u + 1]).T @ (zc * slope[:, u : u + 1]) for u in range(slope.shape[1])]
        )
        assert r["lambda_max centred only"] == pytest.approx(torch.linalg.eigvalsh(dense).max().item(), rel=1e-10)
        assert r["kappa centred only"] == pytest.approx(condition_number(torch.linalg.eigvalsh(dense)), rel=1e-8)
