import copy
import typing

import pytest
import torch

from bpviz.config import ConfigError, OptimizerName, RunConfig
from bpviz.data import make_circles
from bpviz.hessian_report import local_hessian_report
from bpviz.models import build_model, network_loss
from bpviz.optim import ALGORITHMS, make_algorithm
from bpviz.optim.sa_sgd import SASGD
from bpviz.options import ALGORITHM_OPTIONS, check_optimizer


def problem(cfg: RunConfig, n=64, d_in=6, k=3, seed=0):
    model = build_model(cfg, (d_in,), k)
    g = torch.Generator().manual_seed(seed)
    dtype = torch.float64 if cfg.dtype == "float64" else torch.float32
    x = torch.randn(n, d_in, generator=g, dtype=dtype) + 0.5
    y = torch.randint(0, k, (n,), generator=g)
    return model, x, y


def test_every_algorithm_is_registered_and_described():
    assert set(ALGORITHMS) == {"sgd", "adam", "sa_sgd", "proxbp", "sibp"}
    assert list(ALGORITHMS) == list(ALGORITHM_OPTIONS) == list(typing.get_args(OptimizerName))
    for cls in ALGORITHMS.values():
        assert cls.OPTIONS is ALGORITHM_OPTIONS[cls.name]
        assert cls.summary and all(opt.help for opt in cls.OPTIONS.values())


@pytest.mark.parametrize("name", ["sgd", "adam", "sa_sgd"])
def test_baselines_lower_the_loss_on_spirals(name):
    cfg = RunConfig(
        dataset="circles",
        depth=3,
        width=32,
        optimizer=name,
        lr=0.01 if name == "adam" else 0.5,
        batch_norm=name == "sa_sgd",
    )
    data = make_circles(512, 64, 0.0, seed=0)
    model = build_model(cfg, data.input_shape, data.n_outputs)
    algo = make_algorithm(cfg, model)
    first = algo.step(data.x_train, data.y_train).loss.item()
    for _ in range(150):
        result = algo.step(data.x_train, data.y_train)
    assert result.finite() and result.loss.item() < 0.8 * first


def test_step_reports_the_loss_before_the_step():
    cfg = RunConfig(depth=2, width=8, dtype="float64")
    model, x, y = problem(cfg)
    expected = network_loss(model(x), y).item()
    assert make_algorithm(cfg, model).step(x, y).loss.item() == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize(
    "name,options",
    [
        ("sgd", {"momentum": 0.9, "nesterov": True, "weight_decay": 1e-3}),
        ("adam", {"beta1": 0.8, "weight_decay": 1e-3}),
    ],
)
def test_baselines_are_torch_optim(name, options):
    cfg = RunConfig(depth=2, width=8, dtype="float64", optimizer=name, optimizer_options=options, lr=0.05)
    model, x, y = problem(cfg)
    reference = copy.deepcopy(model)
    o = options
    opt = (
        torch.optim.SGD(reference.parameters(), lr=0.05, momentum=0.9, nesterov=True, weight_decay=1e-3)
        if name == "sgd"
        else torch.optim.Adam(reference.parameters(), lr=0.05, betas=(0.8, 0.999), weight_decay=1e-3)
    )
    algo = make_algorithm(cfg, model)
    for _ in range(3):
        algo.step(x, y)
        opt.zero_grad()
        network_loss(reference(x), y).backward()
        opt.step()
    assert all(torch.allclose(p, q, atol=1e-14) for p, q in zip(model.parameters(), reference.parameters())), o


@pytest.mark.parametrize("name", ["sgd", "adam", "sa_sgd"])
def test_set_lr_takes_effect_at_the_next_step(name):
    cfg = RunConfig(depth=2, width=8, dtype="float64", optimizer=name, lr=0.1)
    model, x, y = problem(cfg)
    a, b = make_algorithm(cfg, model), make_algorithm(cfg, copy.deepcopy(model))
    b.set_lr(0.01)
    before = [p.clone() for p in a.model.parameters()]
    a.step(x, y)
    b.step(x, y)
    moved_a = sum((p - q).norm() for p, q in zip(a.model.parameters(), before))
    moved_b = sum((p - q).norm() for p, q in zip(b.model.parameters(), before))
    assert b.lr == 0.01 and moved_b < 0.5 * moved_a
    with pytest.raises(ConfigError, match="lr"):
        a.set_lr(-1.0)


# --- SA-SGD -------------------------------------------------------------------------------------
@pytest.mark.parametrize("bn", [False, True])
def test_sa_sgd_with_every_scale_forced_to_one_is_sgd(bn, monkeypatch):
    cfg = RunConfig(
        depth=3,
        width=8,
        dtype="float64",
        batch_norm=bn,
        skip=True,
        optimizer="sa_sgd",
        lr=0.1,
        optimizer_options={"momentum": 0.9, "weight_decay": 1e-3},
    )
    model, x, y = problem(cfg)
    reference = copy.deepcopy(model)
    sgd = make_algorithm(
        cfg.replace(optimizer="sgd", optimizer_options={"momentum": 0.9, "weight_decay": 1e-3}), reference
    )
    sa = make_algorithm(cfg, model)
    monkeypatch.setattr(
        SASGD, "parameter_scales", lambda self: {p: torch.ones((), dtype=p.dtype) for p in self.model.parameters()}
    )
    for _ in range(3):
        sa.step(x, y)
        sgd.step(x, y)
    assert all(torch.equal(p, q) for p, q in zip(model.parameters(), reference.parameters()))
    assert sa.scalars()["scale/0"].item() == 1.0


def test_sa_sgd_scalars_are_the_local_hessian_traces_without_bn():
    # lr ~ 0: _scalars() re-reads the weights after the step, so they must not have moved
    cfg = RunConfig(
        depth=3,
        width=8,
        dtype="float64",
        skip=True,
        optimizer="sa_sgd",
        lr=1e-14,
        optimizer_options={"amend": "all", "normalize": False},
    )
    model, x, y = problem(cfg, d_in=5)
    sa = make_algorithm(cfg, model)
    report = local_hessian_report(model, x, max_samples=None)  # exact traces of J^T J
    sa.step(x, y)  # captures this batch; scales come from the state before the update
    scalars = sa._scalars()
    for b, block in enumerate(model.blocks):
        betas, alpha = scalars[b]
        stats_w, stats_z = report.get(b, "weight"), report.get(b, "input")
        assert betas[block.affine.weight].mean().item() == pytest.approx(stats_w.trace / stats_w.size, rel=1e-10)
        assert alpha.item() == pytest.approx(stats_z.trace / stats_z.size, rel=1e-10)
    # composition: eta_b = eta / (beta_b * prod_{j>b} alpha_j), the head last
    scales = sa._scales
    head_alpha = scalars[-1][1]
    w_last = model.blocks[-1].weight
    assert scales[w_last].item() == pytest.approx(1 / (scalars[-2][0][w_last].mean() * head_alpha).item(), rel=1e-12)
    w_first = model.blocks[0].weight
    above = head_alpha * scalars[1][1] * scalars[2][1]
    assert scales[w_first].item() == pytest.approx(1 / (scalars[0][0][w_first].mean() * above).item(), rel=1e-12)


def test_sa_sgd_bn_beta_is_close_to_the_exact_trace():
    cfg = RunConfig(
        depth=2,
        width=16,
        dtype="float64",
        batch_norm=True,
        optimizer="sa_sgd",
        lr=0.1,
        optimizer_options={"amend": "all"},
    )
    model, x, y = problem(cfg, n=128, d_in=16)
    sa = make_algorithm(cfg, model)
    report = local_hessian_report(model, x, max_samples=None)
    sa.step(x, y)
    betas, _ = sa._scalars()[1]
    exact = report.get(1, "weight")
    # BN's rank-one scale projection is dropped: about 1/fan_in of the trace
    assert betas[model.blocks[1].affine.weight].mean().item() == pytest.approx(exact.trace / exact.size, rel=2 / 16)


@pytest.mark.parametrize("amend", ["all", "bn_weights"])
def test_sa_sgd_channel_scales_and_normalisation(amend):
    cfg = RunConfig(
        depth=3,
        width=8,
        batch_norm=True,
        optimizer="sa_sgd",
        lr=0.1,
        optimizer_options={"amend": amend, "granularity": "channel"},
    )
    model, x, y = problem(cfg)
    sa = make_algorithm(cfg, model)
    sa.step(x, y)
    w = model.blocks[1].weight
    assert sa._scales[w].shape == (8,) and sa._scales[w].std() > 0
    logs = torch.cat([s.reshape(-1).log() for s in sa._scales.values()])
    assert logs.mean().abs().item() < 1e-5  # geometric mean 1
    assert set(sa.step(x, y).scalars) == {"scale/0", "scale/1", "scale/2", "scale/head"}


def test_sa_sgd_reuses_its_scales_between_refreshes():
    cfg = RunConfig(
        depth=2, width=8, optimizer="sa_sgd", lr=0.1, optimizer_options={"amend": "all", "refresh_every": 3}
    )
    model, x, y = problem(cfg)
    sa = make_algorithm(cfg, model)
    seen = [dict(sa.step(x * (1 + i), y).scalars) for i in range(4)]
    assert seen[0] == seen[1] == seen[2] and seen[3] != seen[2]


def test_sa_sgd_running_statistics_are_an_ema():
    opts = {"amend": "all", "normalize": False, "refresh_every": 1}
    cfg = RunConfig(depth=2, width=8, dtype="float64", optimizer="sa_sgd", lr=1e-12, optimizer_options=opts)
    model, x, y = problem(cfg)
    w = model.blocks[0].weight
    batch = make_algorithm(cfg, model)  # lr ~ 0: the model stays put, only the batches differ
    betas = []
    for xb in (x, 2 * x):
        batch.step(xb, y)
        betas.append(batch._scalars()[0][0][w])
    running = make_algorithm(cfg.replace(optimizer_options={**opts, "statistics": "running", "ema": 0.75}), model)
    running.step(x, y)
    running.step(2 * x, y)
    assert torch.allclose(running._running[0][0][w], 0.75 * betas[0] + 0.25 * betas[1], rtol=1e-9)
    assert not torch.allclose(betas[0], betas[1])


@pytest.mark.parametrize("amend", ["bn_weights", "all", "head"])
@pytest.mark.parametrize("arch", ["mlp", "cnn"])
def test_sa_sgd_trains_bn_networks(arch, amend):
    cfg = RunConfig(
        dataset="digits",
        arch=arch,
        depth=3,
        width=8,
        batch_norm=True,
        optimizer="sa_sgd",
        lr=0.1,
        optimizer_options={"momentum": 0.9, "amend": amend},
    )
    shape = (1, 8, 8)
    model = build_model(cfg, shape, 10)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(64, *shape, generator=g)
    y = torch.randint(0, 10, (64,), generator=g)
    algo = make_algorithm(cfg, model)
    first = algo.step(x, y).loss.item()
    for _ in range(60):
        result = algo.step(x, y)
    assert result.finite() and result.loss.item() < 0.8 * first


def one_step(cfg: RunConfig, model, x, y) -> tuple[dict, object]:
    """Each parameter's change in one step of ``cfg``'s algorithm on a copy of ``model``, and the algorithm."""
    copy_ = copy.deepcopy(model)
    algo = make_algorithm(cfg, copy_)
    before = [p.detach().clone() for p in copy_.parameters()]
    algo.step(x, y)
    return {name: p.detach() - b for (name, p), b in zip(copy_.named_parameters(), before)}, algo


def images(n=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 1, 8, 8, generator=g, dtype=torch.float64) + 0.5, torch.randint(0, 10, (n,), generator=g)


@pytest.mark.parametrize("arch", ["mlp", "cnn"])
@pytest.mark.parametrize("granularity", ["block", "channel"])
@pytest.mark.parametrize("normalize", [True, False])
def test_sa_sgd_bn_weights_scales_only_the_bn_weights_by_sigma2_over_gamma2(arch, granularity, normalize):
    opts = {"amend": "bn_weights", "granularity": granularity, "normalize": normalize}
    cfg = RunConfig(
        dataset="digits",
        arch=arch,
        depth=3,
        width=8,
        dtype="float64",
        batch_norm=True,
        skip=True,
        optimizer="sa_sgd",
        lr=0.1,
        optimizer_options=opts,
    )
    model, (x, y) = build_model(cfg, (1, 8, 8), 10), images()
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():  # gammas away from 1, and a block without BN, which keeps eta
        for block in model.blocks:
            block.bn.weight.uniform_(0.5, 2.0, generator=gen)
    model.blocks[1].bn = None
    sgd, _ = one_step(cfg.replace(optimizer="sgd", optimizer_options={}), model, x, y)
    sa, algo = one_step(cfg, model, x, y)
    # sigma^2 = biased batch variance of the affine output + BN's eps, per channel; gamma = bn.weight
    zs = model.block_inputs(x)
    expected = {}
    for b in (0, 2):
        block = model.blocks[b]
        g = block.affine(zs[b]).double().transpose(0, 1).reshape(8, -1)
        var = ((g - g.mean(1, keepdim=True)) ** 2).mean(1) + 1e-5
        ratio = var / block.bn.weight.detach().double() ** 2
        expected[f"blocks.{b}.affine.weight"] = ratio.mean() if granularity == "block" else ratio
    if normalize:  # geometric mean 1 over the amended entries (blocks, or channels)
        mean = torch.cat([s.reshape(-1).log() for s in expected.values()]).mean().exp()
        expected = {name: s / mean for name, s in expected.items()}
    assert set(algo._scales) == {algo.model.blocks[0].weight, algo.model.blocks[2].weight}
    for name, delta in sa.items():
        if name in expected:
            s = expected[name]
            factor = s.view(-1, *[1] * (delta.dim() - 1)) if s.dim() else s
            assert torch.allclose(delta, factor * sgd[name], rtol=1e-10, atol=1e-15), name
        else:  # biases, gamma, beta, skip projections, the block without BN, the head
            assert torch.equal(delta, sgd[name]), name
    scalars = algo.scalars()
    assert scalars["scale/1"].item() == scalars["scale/head"].item() == 1.0
    assert scalars["scale/2"].item() == pytest.approx(expected["blocks.2.affine.weight"].mean().item(), rel=1e-10)


def test_sa_sgd_bn_weights_running_sigma2_is_an_ema():
    opts = {"amend": "bn_weights", "statistics": "running", "ema": 0.75, "refresh_every": 1}
    cfg = RunConfig(
        depth=2, width=8, dtype="float64", batch_norm=True, optimizer="sa_sgd", lr=1e-12, optimizer_options=opts
    )
    model, x, y = problem(cfg)
    algo = make_algorithm(cfg, model)  # lr ~ 0: the model stays put, only the batches differ
    variances = []
    for xb in (x, 2 * x):
        algo.step(xb, y)
        variances.append(model.blocks[0].affine(xb).var(0, correction=0) + 1e-5)
    assert torch.allclose(algo._running_var[0], 0.75 * variances[0] + 0.25 * variances[1], rtol=1e-9)


@pytest.mark.parametrize("arch", ["mlp", "cnn"])
def test_sa_sgd_head_ablation_changes_only_the_head_by_its_all_factor(arch):
    cfg = RunConfig(
        dataset="digits",
        arch=arch,
        depth=3,
        width=8,
        dtype="float64",
        batch_norm=True,
        skip=True,
        optimizer="sa_sgd",
        lr=0.1,
        optimizer_options={"amend": "head"},
    )
    model, (x, y) = build_model(cfg, (1, 8, 8), 10), images()
    sgd, _ = one_step(cfg.replace(optimizer="sgd", optimizer_options={}), model, x, y)
    head, algo = one_step(cfg, model, x, y)
    _, full = one_step(cfg.replace(optimizer_options={"amend": "all"}), model, x, y)
    factors = {
        "head.linear.weight": full._scales[full.model.head.linear.weight],
        "head.linear.bias": full._scales[full.model.head.linear.bias],
    }
    assert all(abs(f.item() - 1) > 0.1 for f in factors.values())  # the ablation does change the head's step
    for name, delta in head.items():
        if name in factors:
            assert torch.allclose(delta, factors[name] * sgd[name], rtol=1e-10, atol=1e-15), name
        else:
            assert torch.equal(delta, sgd[name]), name
    scalars = algo.scalars()
    assert scalars["scale/head"].item() == pytest.approx(factors["head.linear.weight"].item(), rel=1e-12)
    assert all(scalars[f"scale/{b}"].item() == 1.0 for b in range(3))


# --- option checks ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "optimizer,options,match",
    [
        (
            "sgd",
            {"momentun": 0.9},
            r"unknown option\(s\) \['momentun'\] for optimizer 'sgd'; allowed: momentum, nesterov, weight_decay",
        ),
        ("sgd", {"momentum": 1.5}, r"optimizer_options.momentum .*<= 1.0"),
        ("sgd", {"nesterov": "yes"}, r"optimizer_options.nesterov .*a bool"),
        ("sa_sgd", {"granularity": "layer"}, r"granularity .*'block', 'channel'"),
        (
            "sa_sgd",
            {"amend": "weights"},
            r"optimizer_options.amend .*got 'weights'; allowed: one of 'bn_weights', 'all', 'head'",
        ),
        ("adam", {"eps": -1.0}, r"optimizer_options.eps"),
    ],
)
def test_bad_options_are_refused_when_the_config_is_made(optimizer, options, match):
    with pytest.raises(ConfigError, match=match):
        RunConfig(optimizer=optimizer, optimizer_options=options)


def test_unknown_algorithm_names_the_allowed_ones():
    with pytest.raises(ConfigError, match="'sgd', 'adam', 'sa_sgd', 'proxbp', 'sibp'"):
        RunConfig(optimizer="lbfgs")
    with pytest.raises(ConfigError, match="'sgd', 'adam', 'sa_sgd', 'proxbp', 'sibp'"):
        check_optimizer("lbfgs", {}, arch="mlp", batch_norm=False, skip=False)


def test_divergence_shows_in_the_result_not_a_hang():
    cfg = RunConfig(depth=3, width=16, lr=1e3, activation="relu", init="kaiming")
    model, x, y = problem(cfg)
    algo = make_algorithm(cfg, model)
    results = [algo.step(x, y) for _ in range(20)]
    assert not results[-1].finite() or not algo.parameters_finite()
