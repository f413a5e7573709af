"""SIBP's default solver against an independent NumPy port of the authors' MATLAB code
(liur0810/semi-implicit-back-propagation: ``sibp_inner.m``, ``FR3.m``, ``FR4.m``, ``lReLu.m``),
written here line by line from the MATLAB in its column layout (neurons × samples), not from bpviz;
and the quirks of that code bpviz keeps (``bpviz.optim.sibp_solvers.AUTHORS_QUIRKS``)."""

import math

import numpy as np
import pytest
import torch

from bpviz.config import ConfigError, RunConfig
from bpviz.models import build_model
from bpviz.optim.sibp import SIBP
from bpviz.optim.sibp_solvers import AUTHORS_QUIRKS, FletcherReevesArmijo, authors_prox


# --- the port ---------------------------------------------------------------------------------------
def fro2(a):
    return float(np.sum(a * a))  # norm(a,'fro')^2


def port_fr3(F, B, F_next, W_old, lam, maxk=5, rho=0.6, sigma=0.1):
    x0 = W_old.copy()
    k = 0
    mid = np.maximum(x0 @ F + B, 0)
    midg = (mid > 0).astype(float)
    g = 2 * ((mid - F_next) * midg) @ F.T + 2 * lam * (x0 - W_old)
    d = -g
    while k < maxk:
        m, mk = 0, 0
        B0_1 = fro2(np.maximum(x0 @ F + B, 0) - F_next) + lam * fro2(x0 - W_old)
        gsearch = sigma * np.sum(g * d)
        m_on = 0
        while m < 50:
            x1 = x0 + rho**m * d
            A0 = fro2(np.maximum(x1 @ F + B, 0) - F_next) + lam * fro2(x1 - W_old)
            B0 = B0_1 + gsearch * rho**m
            if m == 0 and m_on == 0:
                m = max(math.floor(math.log(B0_1 * 0.01 / abs(gsearch)) / math.log(rho)), 0)
                m_on = 1
            if A0 < B0:
                mk = m
                break
            m = m + 1
        if mk > 0:
            x0 = x0 + rho**mk * d
        mid = np.maximum(x0 @ F + B, 0)
        midg = (mid > 0).astype(float)
        gnew = 2 * ((mid - F_next) * midg) @ F.T + 2 * lam * (x0 - W_old)
        beta = fro2(gnew) / fro2(g)
        d = -gnew + beta * d
        g = gnew
        k = k + 1
    return x0


def port_fr4(F, B, F_next, W_old, lam, maxk=5, rho=0.6, sigma=0.1):
    x0 = W_old.copy()
    k = 0
    g = 2 * (x0 @ F - F_next) @ F.T + 2 * lam * (x0 - W_old)
    d = -g
    while k < maxk:
        m, mk = 0, 0
        B0_1 = fro2(x0 @ F + B - F_next) + lam * fro2(x0 - W_old)
        gsearch = sigma * np.sum(g * d)
        while m < 50:
            x1 = x0 + rho**m * d
            A0 = fro2(x1 @ F + B - F_next) + lam * fro2(x1 - W_old)
            B0 = B0_1 + gsearch * rho**m
            if A0 < B0:
                mk = m
                break
            m = m + 1
        if mk > 0:
            x0 = x0 + rho**mk * d
        gnew = 2 * (x0 @ F + B - F_next) @ F.T + 2 * lam * (x0 - W_old)
        beta = fro2(gnew) / fro2(g)
        d = -gnew + beta * d
        g = gnew
        k = k + 1
    return x0


def softmax_columns(a):
    e = np.exp(a - a.max(0, keepdims=True))
    return e / e.sum(0, keepdims=True)


def port_sibp_inner(X, Y, Weight, b, lam, ita):
    """``sibp_inner.m`` with iter = 1; Weight/b are lists (MATLAB cells), b{i} a column."""
    Weight, b = [w.copy() for w in Weight], [v.copy() for v in b]
    n = X.shape[1]
    ones = np.ones((1, n))
    N = len(b) + 1
    F = [None] * (N + 1)  # 1-based like the MATLAB cells
    F[1] = X
    for i in range(2, N):
        F[i] = np.maximum(Weight[i - 2] @ F[i - 1] + b[i - 2] @ ones, 0)
    F[N] = Weight[N - 2] @ F[N - 1] + b[N - 2] @ ones
    gd = softmax_columns(F[N]) - Y
    F[N] = F[N] - gd * ita
    Weight[N - 2] = port_fr4(F[N - 1], b[N - 2] @ ones, F[N], Weight[N - 2], lam)
    b[N - 2] = port_fr4(ones, Weight[N - 2] @ F[N - 1], F[N], b[N - 2], lam)
    gd = Weight[N - 2].T @ gd
    mid = F[N - 1].copy()
    F[N - 1] = F[N - 1] - ita * gd
    for i in range(N - 2, 0, -1):
        Weight[i - 1] = port_fr3(F[i], b[i - 1] @ ones, F[i + 1], Weight[i - 1], lam)
        b[i - 1] = port_fr3(ones, Weight[i - 1] @ F[i], F[i + 1], b[i - 1], lam)
        if i > 1:
            mid[mid > 0] = 1
            gd = Weight[i - 1].T @ (gd * mid)
            mid = F[i].copy()
            F[i] = F[i] - ita * gd
    return Weight, b


# --- bpviz against the port -------------------------------------------------------------------------
def authors_net(depth, width, d_in, n_out, seed):
    """The authors' init (main.m): W and b ~ N(0, 0.05²), in float64."""
    cfg = RunConfig(
        depth=depth,
        width=width,
        activation="relu",
        init="gaussian",
        init_std=0.05,
        bias_init="gaussian",
        dtype="float64",
        seed=seed,
        optimizer="sibp",
    )
    return build_model(cfg, (d_in,), n_out)


def matlab_params(model):
    linears = [b.affine for b in model.blocks] + [model.head.linear]
    return (
        [lin.weight.detach().numpy().copy() for lin in linears],
        [lin.bias.detach().numpy()[:, None].copy() for lin in linears],
    )


@pytest.mark.parametrize("depth,eta,lam", [(1, 0.1, 1.0), (2, 0.1, 1.0), (3, 2.0, 0.5), (2, 10.0, 1.0)])
def test_bpviz_sibp_equals_the_port_of_the_authors_code_over_several_steps(depth, eta, lam):
    d_in, width, n_out, n = 6, 7, 4, 20
    model = authors_net(depth, width, d_in, n_out, seed=depth)
    g = torch.Generator().manual_seed(10 + depth)
    W, b = matlab_params(model)
    algo = SIBP(model, eta, lam=lam)
    moved = 0.0
    for step in range(4):
        x = torch.rand(n, d_in, generator=g, dtype=torch.float64) * 2.0  # pixel-like, non-negative
        y = torch.randint(0, n_out, (n,), generator=g)
        Y = np.eye(n_out)[y.numpy()].T
        W_before = [w.copy() for w in W]
        W, b = port_sibp_inner(x.numpy().T, Y, W, b, lam, eta)
        moved = max(moved, max(np.abs(w - w0).max() for w, w0 in zip(W, W_before)))
        algo.step(x, y)
        got_W, got_b = matlab_params(model)
        for ours, theirs in zip(got_W + got_b, W + b):
            assert np.abs(ours - theirs).max() < 1e-10, step
    assert moved > 1e-3  # the comparison is not between two unmoved networks


# --- the quirks kept --------------------------------------------------------------------------------
def quadratic(scale):
    """f(x) = scale ‖x − 1‖² from x = 0: FR's first direction is −∇f(0) = 2·scale·1."""

    def objective(x):
        return float(scale * torch.sum((x - 1.0) ** 2))

    def gradient(x):
        return 2.0 * scale * (x - 1.0)

    return objective, gradient


def test_quirk_an_accepted_full_step_is_discarded():
    # f = 0.25‖x − 1‖²: the full step x = 0 − ∇f(0) = 0.5·1 passes Armijo at once (m = 0) ...
    objective, gradient = quadratic(0.25)
    x0 = torch.zeros(3, dtype=torch.float64)
    solver = FletcherReevesArmijo(iters=1, rho=0.6, sigma=0.1)
    x = solver.minimise(objective, gradient, x0, gradient(x0), heuristic_start=False)
    # ... and the authors' `if mk > 0` drops it: nothing moves, although the step would have halved f
    assert torch.equal(x, x0) and solver.applied == 0
    assert objective(x0 - gradient(x0)) < 0.5 * objective(x0)


def test_quirk_hidden_layers_apply_the_untested_heuristic_exponent():
    # f = ‖x − 1‖² from 0: f0 = 3, g = −2·1, d = 2·1, slope = σ gᵀd = −1.2; the full step x = 2·1 gives
    # f = 3 which is not < 3 − 1.2, so backtracking starts at the heuristic exponent + 1
    objective, gradient = quadratic(1.0)
    x0 = torch.zeros(3, dtype=torch.float64)
    rho, sigma = 0.6, 0.1
    m_h = max(math.floor(math.log(3 * 0.01 / 1.2) / math.log(rho)), 0)  # = 7
    solver = FletcherReevesArmijo(iters=1, rho=rho, sigma=sigma)
    x = solver.minimise(objective, gradient, x0, gradient(x0), heuristic_start=True)
    assert m_h == 7
    assert torch.allclose(x, x0 + rho ** (m_h + 1) * 2.0, rtol=0, atol=1e-15)
    # f = 0.25‖x − 1‖²: the full step passes, and the exponent applied is the heuristic one, never tested
    objective, gradient = quadratic(0.25)  # f0 = 0.75, slope = −0.075 -> heuristic exponent 4
    solver = FletcherReevesArmijo(iters=1, rho=rho, sigma=sigma)
    x = solver.minimise(objective, gradient, x0, gradient(x0), heuristic_start=True)
    m_h = max(math.floor(math.log(0.75 * 0.01 / 0.075) / math.log(rho)), 0)
    assert m_h == 4 and torch.allclose(x, x0 + rho**m_h * 0.5, rtol=0, atol=1e-15)


def test_quirk_the_output_layers_first_gradient_leaves_out_the_bias():
    # one FR iteration on the output layer's W: its direction is −2(aWᵀ − T)ᵀa, without b (FR4.m line 8)
    g = torch.Generator().manual_seed(3)
    a = torch.rand(10, 4, generator=g, dtype=torch.float64)
    w = 0.1 * torch.randn(3, 4, generator=g, dtype=torch.float64)
    bias = torch.full((3,), 5.0, dtype=torch.float64)  # a large bias makes the difference plain
    target = torch.randn(10, 3, generator=g, dtype=torch.float64)
    solver = FletcherReevesArmijo(iters=1, rho=0.6, sigma=0.1)
    new_w, _ = authors_prox(a, target, w, bias, 1.0, "linear", True, solver)
    without_b = -2.0 * ((a @ w.t() - target).t() @ a)
    with_b = -2.0 * ((a @ w.t() + bias - target).t() @ a)
    step = new_w - w
    cos = lambda u, v: float(torch.sum(u * v) / (u.norm() * v.norm()))  # noqa: E731
    assert step.norm() > 0
    assert cos(step, without_b) > 1 - 1e-12
    assert cos(step, with_b) < 0.99


def test_every_quirk_is_listed():
    assert len(AUTHORS_QUIRKS) == 4


# --- options ----------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "options,match",
    [
        ({"solver": "newton"}, r"solver.*one of 'authors', 'gauss_newton'"),
        ({"fr_iters": 0}, r"fr_iters.*>= 1"),
        ({"fr_iters": 101}, r"fr_iters.*<= 100"),
        ({"armijo_rho": 1.0}, r"armijo_rho.*> 0.0 and < 1.0"),
        ({"armijo_rho": 0.0}, r"armijo_rho.*> 0.0 and < 1.0"),
        ({"armijo_sigma": 1.5}, r"armijo_sigma.*> 0.0 and < 1.0"),
        ({"lam": 0.0}, r"lam.*> 0.0"),
        ({"cg_iters": 0}, r"cg_iters.*>= 1"),
    ],
)
def test_options_out_of_range_are_refused_before_training(options, match):
    with pytest.raises(ConfigError, match=match):
        RunConfig(optimizer="sibp", optimizer_options=options)


@pytest.mark.parametrize("output_layer", [False, True])
def test_reading_the_trials_in_batches_takes_the_same_steps_with_fewer_reads(output_layer, monkeypatch):
    """On a GPU the solver reads several Armijo trials per device sync: every trial is computed as
    it would be alone, so the layer's new weights are bitwise those of one trial per read."""
    from bpviz.optim import sibp_solvers

    g = torch.Generator().manual_seed(5)
    a = torch.rand(40, 12, generator=g)
    w, bias = 0.5 * torch.randn(9, 12, generator=g), 0.5 * torch.randn(9, generator=g)
    target = torch.relu(a @ w.t() + bias) + 3.0 * torch.randn(40, 9, generator=g)  # far off: many trials
    original, reads, results = sibp_solvers.read_numbers, [], []

    def counted(values, device):
        reads[-1] += 1
        return original(values, device)

    monkeypatch.setattr(sibp_solvers, "read_numbers", counted)
    for per_read in (1, 3, 8):
        reads.append(0)
        solver = FletcherReevesArmijo(iters=5, rho=0.6, sigma=0.1, trials_per_read=per_read)
        activation = "linear" if output_layer else "relu"
        results.append((*authors_prox(a, target, w, bias, 1.0, activation, output_layer, solver), solver.applied))
    for other in results[1:]:
        assert torch.equal(other[0], results[0][0]) and torch.equal(other[1], results[0][1])
        assert other[2] == results[0][2]
    assert results[0][2] > 0 and not torch.equal(results[0][0], w)  # the steps were taken, not skipped
    assert reads[0] > reads[1] > reads[2], reads
