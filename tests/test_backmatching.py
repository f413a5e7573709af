import copy
import itertools

import pytest
import torch

from bpviz.backmatching import back_matching_step, back_matching_targets, stages
from bpviz.config import RunConfig
from bpviz.models import build_model, network_loss


def sgd_step(model, x, y, lr):
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    opt.zero_grad()
    network_loss(model(x), y).backward()
    opt.step()


@pytest.mark.parametrize("bn,skip,act", list(itertools.product([False, True], [False, True], ["tanh", "relu"])))
def test_one_unit_step_per_block_equals_one_sgd_step(make_net, bn, skip, act):
    model, x, y = make_net(
        n=9, depth=3, width=5, batch_norm=bn, skip=skip, activation=act, init="gaussian", init_std=0.7
    )
    reference = copy.deepcopy(model)
    sgd_step(reference, x, y, lr=0.3)
    moved = max((p - q).abs().max().item() for p, q in zip(model.parameters(), reference.parameters()))
    back_matching_step(model, x, y, lr=0.3)
    for (name, p), q in zip(model.named_parameters(), reference.parameters()):
        assert (p - q).abs().max().item() < 1e-10, name
    assert moved > 1e-3  # the step really moved the parameters


@pytest.mark.parametrize("bn,skip", [(False, False), (True, True)])
def test_cnn_back_matching_equals_sgd(bn, skip):
    model = build_model(
        RunConfig(dataset="digits", arch="cnn", depth=2, width=3, batch_norm=bn, skip=skip, dtype="float64"),
        (1, 5, 5),
        4,
    )
    x = torch.randn(6, 1, 5, 5, dtype=torch.float64)
    y = torch.randint(0, 4, (6,))
    reference = copy.deepcopy(model)
    sgd_step(reference, x, y, lr=0.5)
    back_matching_step(model, x, y, lr=0.5)
    assert max((p - q).abs().max().item() for p, q in zip(model.parameters(), reference.parameters())) < 1e-10


def test_regression_loss_back_matching_equals_sgd(make_net):
    model, x, _ = make_net(depth=2, width=4, n_out=2, dataset="teacher")
    y = torch.randn(x.shape[0], 2, dtype=torch.float64)
    reference = copy.deepcopy(model)
    sgd_step(reference, x, y, lr=0.2)
    back_matching_step(model, x, y, lr=0.2)
    assert max((p - q).abs().max().item() for p, q in zip(model.parameters(), reference.parameters())) < 1e-10


def test_targets_are_outputs_minus_lr_times_the_gradient(make_net):
    model, x, y = make_net(depth=3, width=5, batch_norm=True)
    lr = 0.1
    bm = back_matching_targets(model, x, y, lr)
    before = [p.clone() for p in model.parameters()]
    # independent: dl/dz_b by autograd through the whole network
    z = model.prepare(x)
    outputs = []
    for block in model.blocks:
        z = block.local_forward(z)
        outputs.append(z)
    outputs.append(model.head(z))
    grads = torch.autograd.grad(network_loss(outputs[-1], y), outputs)
    for b, g in enumerate(grads):
        assert torch.allclose(bm.residuals()[b], lr * g, atol=1e-13)
    assert all(torch.equal(p, q) for p, q in zip(before, model.parameters()))
    assert len(bm.targets) == len(stages(model)) == len(model.blocks) + 1


def test_non_positive_lr_is_refused(make_net):
    model, x, y = make_net()
    with pytest.raises(ValueError, match="lr must be > 0"):
        back_matching_step(model, x, y, lr=0.0)
