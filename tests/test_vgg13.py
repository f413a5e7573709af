"""VGG13 from explicit blocks: against the standard layout (an nn.Sequential VGG13-BN written here),
its shapes and parameter count, and its local Hessians and SA-SGD scalars where a block max-pools."""

import pytest
import torch
from torch import nn

from bpviz.config import RunConfig
from bpviz.local_hessian import dense_reference_spectrum, local_hessian_spectrum
from bpviz.models import build_model
from bpviz.optim import make_algorithm

#: VGG13 (configuration B): channels, "M" a 2x2 max-pool, as the VGG paper's table lists it
STANDARD = [64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"]


def standard_vgg13_bn(n_classes: int, width: int = 64) -> nn.Sequential:
    layers, c_in = [], 3
    for v in STANDARD:
        if v == "M":
            layers.append(nn.MaxPool2d(2))
        else:
            c = v * width // 64
            layers += [nn.Conv2d(c_in, c, 3, padding=1), nn.BatchNorm2d(c), nn.ReLU()]
            c_in = c
    return nn.Sequential(*layers, nn.Flatten(), nn.Linear(c_in, n_classes))


def vgg(width=64, classes=10, batch_norm=True, **kw) -> nn.Module:
    cfg = RunConfig(
        arch="vgg13",
        depth=10,
        width=width,
        dataset="cifar10",
        activation="relu",
        batch_norm=batch_norm,
        init="kaiming",
        **kw,
    )
    return build_model(cfg, (3, 32, 32), classes)


@pytest.mark.parametrize("classes", [10, 100])
def test_parameters_and_shapes_are_the_standard_vgg13_bn(classes):
    model = vgg(classes=classes)
    reference = standard_vgg13_bn(classes)
    count = sum(p.numel() for p in model.parameters())
    assert count == sum(p.numel() for p in reference.parameters())
    if classes == 10:
        assert count == 9_416_010  # 9.40M in the convolutions, 5,888 in BN, 5,130 in the classifier
    z = torch.zeros(2, 3, 32, 32)
    shapes = []
    for block in model.blocks:
        z = block(z)
        shapes.append(tuple(z.shape[1:]))
    assert shapes == [
        (64, 32, 32),
        (64, 32, 32),
        (128, 16, 16),
        (128, 16, 16),
        (256, 8, 8),
        (256, 8, 8),
        (512, 4, 4),
        (512, 4, 4),
        (512, 2, 2),
        (512, 2, 2),
    ]
    assert model(torch.zeros(2, 3, 32, 32)).shape == (2, classes)


def copy_into_standard(model, reference: nn.Sequential) -> None:
    convs = [m for m in reference if isinstance(m, nn.Conv2d)]
    bns = [m for m in reference if isinstance(m, nn.BatchNorm2d)]
    for block, conv, bn in zip(model.blocks, convs, bns, strict=True):
        conv.load_state_dict(block.affine.state_dict())
        bn.load_state_dict(block.bn.state_dict())
    reference[-1].load_state_dict(model.head.linear.state_dict())


def test_the_pool_opening_a_block_is_the_standard_net_with_the_pool_closing_one():
    torch.manual_seed(0)
    model, reference = vgg(width=8).double(), standard_vgg13_bn(10, width=8).double()
    copy_into_standard(model, reference)
    x = torch.randn(4, 3, 32, 32, dtype=torch.float64)
    assert torch.allclose(model(x), reference(x), atol=1e-12)  # train mode: batch statistics
    model.eval(), reference.eval()
    assert torch.allclose(model(x), reference(x), atol=1e-12)  # eval mode: the running statistics both kept


def test_skip_only_where_a_block_keeps_its_shape():
    model = vgg(width=4, skip=True)
    assert [b.skip for b in model.blocks] == [False, True, False, True, False, True, False, True, False, True]
    assert all(b.projection is None for b in model.blocks)
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 10)


@pytest.mark.parametrize("batch_norm", [False, True])
@pytest.mark.parametrize("wrt", ["weight", "input"])
def test_a_pooling_blocks_local_hessian_equals_dense_autograd(batch_norm, wrt):
    """Block 2 opens stage 2 with a max-pool: its exact spectrum (im2col of the pooled input for the
    weight, per-sample Jacobians for the input) against the float64 autograd Jacobian of the block."""
    torch.manual_seed(1)
    model = vgg(width=1, batch_norm=batch_norm, dtype="float64")
    x = torch.randn(2, 3, 32, 32, dtype=torch.float64)
    if wrt == "input" and batch_norm:
        x = x[:1]  # BN couples the batch: one dense eigenproblem of the whole input (1024 here)
    exact = local_hessian_spectrum(model, x, block=2, wrt=wrt)
    dense = dense_reference_spectrum(model, x, block=2, wrt=wrt)
    assert model.blocks[2].pool and exact.shape == dense.shape
    assert torch.allclose(exact, dense, atol=1e-9 * dense.max().item())


def test_sa_sgd_takes_alpha_per_entry_of_the_unpooled_input():
    """Max-pool keeps the input Jacobian's norm (each output reads one input) at 4 times the entries:
    alpha of a pooling block is its alpha on the pooled map / 4, and so the head's (its last max-pool)."""
    torch.manual_seed(2)
    cfg = RunConfig(
        arch="vgg13",
        depth=10,
        width=2,
        dataset="cifar10",
        activation="relu",
        dtype="float64",
        optimizer="sa_sgd",
        lr=1e-14,
        optimizer_options={"amend": "all", "normalize": False},
    )
    model = build_model(cfg, (3, 32, 32), 10)
    x, y = torch.randn(4, 3, 32, 32, dtype=torch.float64), torch.randint(0, 10, (4,))
    sa = make_algorithm(cfg, model)
    sa.step(x, y)
    scalars = sa._scalars()
    block = model.blocks[2]
    z_pooled, g = sa._captured[2]
    _, alpha_on_pooled = sa._block_scalars(block, z_pooled, g)
    assert scalars[2][1].item() == pytest.approx(alpha_on_pooled.item() / 4, rel=1e-12)
    # the premise, by autograd: |dF/dz|_F^2 through the pool equals |dF/dpool(z)|_F^2
    z = model.blocks[1](model.blocks[0](x))[:1]
    through = torch.func.jacrev(block.local_forward)(z).pow(2).sum()
    block.pool = False
    try:
        on_pooled = torch.func.jacrev(block.local_forward)(block_pooled := torch.nn.functional.max_pool2d(z, 2))
    finally:
        block.pool = True
    assert block_pooled.numel() * 4 == z.numel()
    assert through.item() == pytest.approx(on_pooled.pow(2).sum().item(), rel=1e-12)
    head_z = sa._captured[len(model.blocks)][0]
    head_alpha = model.head.linear.weight.detach().pow(2).sum() / head_z.shape[1] / 4
    assert scalars[-1][1].item() == pytest.approx(head_alpha.item(), rel=1e-12)


def test_vgg13_trains_with_sgd_and_sa_sgd_on_tiny_images():
    torch.manual_seed(3)
    x, y = torch.randn(16, 3, 32, 32), torch.arange(16) % 4
    for optimizer in ("sgd", "sa_sgd"):
        cfg = RunConfig(
            arch="vgg13",
            depth=10,
            width=4,
            dataset="cifar10",
            activation="relu",
            batch_norm=True,
            init="kaiming",
            optimizer=optimizer,
            lr=0.05,
        )
        model = build_model(cfg, (3, 32, 32), 4)
        algo = make_algorithm(cfg, model)
        losses = [algo.step(x, y).loss.item() for _ in range(30)]
        assert losses[-1] < 0.5 * losses[0], (optimizer, losses[0], losses[-1])
