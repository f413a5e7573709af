"""The decision-boundary payload: what it covers, that it is the model's own prediction, its bounds."""

import json
import time

import pytest
import torch

from bpviz.boundary import decision_boundary, has_boundary, point_subsample
from bpviz.config import RunConfig
from bpviz.data import make_circles, make_gaussians, make_spirals, make_teacher, make_xor
from bpviz.session import State, TrainingSession
from bpviz.train import Trainer

SPIRALS = dict(dataset="spirals", n_train=400, n_test=100, depth=3, width=16, activation="relu", init="kaiming")


def trained(cfg: RunConfig, steps: int = 60) -> Trainer:
    """A trainer a few steps in: BN running statistics have moved, the regions are not one class."""
    trainer = Trainer(cfg.replace(device="cpu"))
    for _ in range(steps):
        trainer.step()
    return trainer


def test_has_boundary_for_2d_classification_only():
    for make in (make_spirals, make_circles, make_xor, make_gaussians):
        assert has_boundary(make(40, 10, 0.1, 0))
    assert not has_boundary(make_teacher(40, 10, 0.1, 0))  # regression
    assert not has_boundary(make_teacher(40, 10, 0.1, 0, input_dim=2))  # 2-D, but regression


def test_the_grid_covers_the_training_points_with_a_margin():
    trainer = trained(RunConfig(**SPIRALS), steps=0)
    b = decision_boundary(trainer.model, trainer.x_train, trainer.y_train, 2, resolution=32)
    assert len(b["x"]) == len(b["y"]) == 32
    for axis, values in (("x", trainer.x_train[:, 0]), ("y", trainer.x_train[:, 1])):
        lo, hi = values.min().item(), values.max().item()
        grid = b[axis]
        assert grid == sorted(grid)
        assert grid[0] == pytest.approx(lo - 0.1 * (hi - lo), abs=1e-4)
        assert grid[-1] == pytest.approx(hi + 0.1 * (hi - lo), abs=1e-4)


def test_predicted_and_confidence_are_the_models_eval_mode_forward_in_float64():
    """An independent forward pass at the payload's grid points, BN in eval mode, float64 run."""
    trainer = trained(RunConfig(**SPIRALS, batch_norm=True, dtype="float64"))
    model = trainer.model
    b = decision_boundary(model, trainer.x_train, trainer.y_train, 2, step=trainer.step_count, resolution=40)
    assert b["step"] == 60 and b["n_classes"] == 2
    x, y = torch.tensor(b["x"], dtype=torch.float64), torch.tensor(b["y"], dtype=torch.float64)
    grid = torch.stack([x.repeat(len(y)), y.repeat_interleave(len(x))], dim=1)  # row i is y[i]
    model.eval()
    with torch.no_grad():
        probs = torch.softmax(model(grid), dim=1)
    model.train()
    predicted = torch.tensor(b["predicted"])
    assert predicted.shape == (40, 40) and set(predicted.unique().tolist()) == {0, 1}
    assert torch.equal(predicted.flatten(), probs.argmax(1))
    expected = probs.max(1).values.view(40, 40)
    assert torch.allclose(torch.tensor(b["confidence"], dtype=torch.float64), expected, atol=5e-4 + 1e-12)
    assert all(0.5 <= c <= 1 for row in b["confidence"] for c in row)


def test_the_payload_is_bounded_json_and_its_points_are_fixed_and_stratified():
    data = make_gaussians(5000, 10, 0.1, 0, n_classes=3)
    trainer = Trainer(RunConfig(dataset="gaussians", depth=2, width=8, device="cpu"), data=data)
    b = decision_boundary(trainer.model, trainer.x_train, trainer.y_train, 3, resolution=20, max_points=50)
    assert len(b["predicted"]) == len(b["confidence"]) == 20
    assert all(len(row) == 20 for row in b["predicted"] + b["confidence"])
    points = b["points"]
    assert len(points["x"]) == len(points["y"]) == len(points["label"]) == 50
    n_values = 2 * 20 * 20 + 2 * 20 + 3 * 50 + 2  # the docstring's worst case
    assert json.loads(json.dumps(b)) == b and len(json.dumps(b)) < 12 * n_values
    counts = torch.bincount(torch.tensor(points["label"]), minlength=3)
    shares = torch.bincount(data.y_train, minlength=3) * 50 / 5000
    assert (counts - shares).abs().max() <= 1  # each class keeps its share
    idx = point_subsample(data.y_train, 50)
    assert idx.unique().numel() == 50
    assert points["x"] == data.x_train[idx, 0].double().round(decimals=4).tolist()
    for _ in range(20):
        trainer.step()
    again = decision_boundary(trainer.model, trainer.x_train, trainer.y_train, 3, resolution=20, max_points=50)
    assert again["points"] == points  # the same points every call, whatever the model does
    small = decision_boundary(trainer.model, trainer.x_train[:30], trainer.y_train[:30], 3, max_points=50)
    assert len(small["points"]["label"]) == 30  # fewer points than max_points: all of them


@pytest.mark.parametrize("training", [True, False])
def test_a_bn_model_is_left_in_the_mode_it_was_in(training):
    trainer = trained(RunConfig(**SPIRALS, batch_norm=True), steps=5)
    model = trainer.model.train(training)
    bn = model.blocks[0].bn
    running = bn.running_mean.clone()
    decision_boundary(model, trainer.x_train, trainer.y_train, 2)
    assert all(m.training is training for m in model.modules())
    assert torch.equal(bn.running_mean, running)  # eval mode: the grid did not move the statistics


def test_the_session_keeps_the_latest_boundary_at_each_evaluation():
    cfg = RunConfig(**SPIRALS, steps=120, hessian_every=10**6)
    session = TrainingSession(cfg, eval_every=50)
    assert session.snapshot()["boundary"]["step"] == 0  # the starting network, shown while idle
    seen = []
    session.subscribe(lambda e: seen.append(e["boundary"]["step"]) if "boundary" in e else None)
    session.start()
    assert session.wait(30) and session.state is State.FINISHED
    snapshot = session.snapshot()
    assert snapshot["boundary"]["step"] == 120 and snapshot["boundary"] is session.boundary
    evaluated = snapshot["history"]["test_accuracy"]["step"]
    assert evaluated == [50, 100, 120]
    deadline = time.monotonic() + 10  # the callback runs on a thread of its own: let it catch up
    while (not seen or seen[-1] != 120) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert seen and set(seen) <= {0, *evaluated} and seen[-1] == 120 and seen == sorted(seen)
    session.reset()
    assert session.snapshot()["boundary"]["step"] == 0


def test_the_session_has_no_boundary_for_images():
    pytest.importorskip("sklearn", reason="the digits dataset ships with scikit-learn")
    digits = TrainingSession(RunConfig(dataset="digits", n_train=200, n_test=50, depth=1, width=8, steps=20))
    digits.start()
    assert digits.wait(30) and digits.state is State.FINISHED
    assert digits.boundary is None and "boundary" not in digits.snapshot()


def test_a_float64_session_keeps_its_boundary():
    session = TrainingSession(RunConfig(**SPIRALS, dtype="float64", steps=20), eval_every=10)
    session.start()
    assert session.wait(30) and session.state is State.FINISHED
    assert session.snapshot()["boundary"]["step"] == 20
