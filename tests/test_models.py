import itertools

import pytest
import torch

from bpviz.config import RunConfig
from bpviz.models import ConvBlock, LinearBlock, build_model


@pytest.mark.parametrize("depth", [1, 100])
@pytest.mark.parametrize("bn,skip", [(False, False), (True, True)])
def test_depth_1_to_100_trains_forward_and_backward(depth, bn, skip):
    model = build_model(RunConfig(depth=depth, width=8, batch_norm=bn, skip=skip), (2,), 2)
    assert len(model.blocks) == depth and all(isinstance(b, LinearBlock) for b in model.blocks)
    out = model(torch.randn(16, 2))
    assert out.shape == (16, 2) and torch.isfinite(out).all()
    out.sum().backward()
    assert all(p.grad is not None for p in model.parameters())


def test_block_layout_linear_bn_activation_and_skip():
    model = build_model(RunConfig(depth=3, width=5, batch_norm=True, skip=True), (3,), 2)
    first, second = model.blocks[0], model.blocks[1]
    assert first.projection is not None and first.projection.weight.shape == (5, 3)  # widths differ
    assert second.projection is None  # identity skip
    assert isinstance(first.bn, torch.nn.BatchNorm1d)
    z = torch.randn(4, 5)
    expected = torch.tanh(second.bn(second.affine(z))) + z
    second.train()
    assert torch.allclose(second(z), expected)


@pytest.mark.parametrize(
    "act,bn,skip", list(itertools.product(["tanh", "relu", "sigmoid", "linear"], [False, True], [False, True]))
)
def test_local_forward_is_the_training_mode_forward_without_side_effects(act, bn, skip):
    model = build_model(RunConfig(depth=2, width=6, activation=act, batch_norm=bn, skip=skip, dtype="float64"), (4,), 3)
    model.train()
    x = torch.randn(9, 4, dtype=torch.float64)
    running = [b.bn.running_mean.clone() for b in model.blocks if b.bn is not None]
    zs = model.block_inputs(x)
    assert all(
        torch.equal(r, b.bn.running_mean) for r, b in zip(running, [b for b in model.blocks if b.bn is not None])
    )
    z = zs[0]
    for block, z_next in zip(model.blocks, zs[1:]):
        assert torch.allclose(block(z), z_next, atol=1e-12)
        z = z_next


def test_cnn_blocks_keep_spatial_size_and_pool_into_the_head():
    cfg = RunConfig(dataset="digits", arch="cnn", depth=3, width=4, batch_norm=True, skip=True)
    model = build_model(cfg, (1, 8, 8), 10)
    assert all(isinstance(b, ConvBlock) for b in model.blocks)
    assert model(torch.randn(5, 1, 8, 8)).shape == (5, 10)
    zs = model.block_inputs(torch.randn(5, 1, 8, 8))
    assert [tuple(z.shape) for z in zs] == [(5, 1, 8, 8)] + [(5, 4, 8, 8)] * 3


def test_orthogonal_init_gives_orthonormal_columns_or_rows():
    model = build_model(RunConfig(depth=2, width=6, init="orthogonal", dtype="float64"), (3,), 2)
    w0, w1 = model.blocks[0].weight, model.blocks[1].weight
    assert torch.allclose(w0.T @ w0, torch.eye(3, dtype=torch.float64), atol=1e-12)  # 6x3: columns
    assert torch.allclose(w1.T @ w1, torch.eye(6, dtype=torch.float64), atol=1e-12)  # square
    head = model.head.linear.weight  # 2x6: rows
    assert torch.allclose(head @ head.T, torch.eye(2, dtype=torch.float64), atol=1e-12)


@pytest.mark.parametrize(
    "init,expected_std", [("gaussian", 0.3), ("xavier", (2 / (200 + 200)) ** 0.5), ("kaiming", 5 / 3 / 200**0.5)]
)
def test_init_scales(init, expected_std):
    model = build_model(RunConfig(depth=2, width=200, init=init, init_std=0.3), (200,), 2)
    w = model.blocks[1].weight
    assert abs(w.std().item() / expected_std - 1) < 0.02
    assert torch.count_nonzero(model.blocks[1].affine.bias) == 0


def test_same_seed_same_weights_other_seed_other_weights():
    a = build_model(RunConfig(seed=3), (2,), 2)
    b = build_model(RunConfig(seed=3), (2,), 2)
    c = build_model(RunConfig(seed=4), (2,), 2)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
    assert not torch.equal(a.blocks[0].weight, c.blocks[0].weight)


def test_dtype_follows_config():
    assert build_model(RunConfig(dtype="float64"), (2,), 2).blocks[0].weight.dtype == torch.float64


def test_wrong_input_shape_is_refused_with_the_expected_shape():
    model = build_model(RunConfig(), (2,), 2)
    with pytest.raises(ValueError, match=r"expects \(batch, 2\)"):
        model(torch.randn(4, 3))


def test_cnn_on_vector_input_is_refused():
    with pytest.raises(ValueError, match="image input"):
        build_model(RunConfig(dataset="digits", arch="cnn"), (40,), 10)
