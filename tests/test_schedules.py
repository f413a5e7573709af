"""Learning-rate schedules and the CIFAR augmentation, and that a run using them resumes exactly."""

import math

import pytest
import torch

from bpviz.augment import random_crop_flip
from bpviz.checkpoint import load_checkpoint, save_checkpoint
from bpviz.config import RunConfig
from bpviz.data import Dataset
from bpviz.schedules import lr_factor
from bpviz.train import Trainer


def test_step_decay_and_cosine_follow_their_formulas():
    steps = 100
    step = [lr_factor("step", t, steps) for t in range(steps)]
    assert step[:50] == [1.0] * 50 and step[50:75] == [pytest.approx(0.1)] * 25
    assert step[75:] == [pytest.approx(0.01)] * 25
    cosine = [lr_factor("cosine", t, steps) for t in range(steps)]
    assert cosine[0] == 1.0 and cosine[50] == pytest.approx(0.5) and 0 < cosine[-1] < 1e-3
    assert all(a > b for a, b in zip(cosine, cosine[1:]))
    assert lr_factor("cosine", 250, steps) == cosine[-1]  # past the end the last factor holds
    assert {lr_factor("constant", t, steps) for t in range(steps)} == {1.0}


def test_the_trainer_steps_with_the_scheduled_lr_and_keeps_a_live_change():
    trainer = Trainer(RunConfig(steps=8, lr=0.4, lr_schedule="step", depth=1, width=4))
    seen = []
    for _ in range(8):
        trainer.step()
        seen.append(trainer.algorithm.lr)
    assert seen == pytest.approx([0.4] * 4 + [0.04] * 2 + [0.004] * 2)
    trainer.set_lr(1.0)  # a user's new step size is scaled by where the schedule is
    assert trainer.algorithm.lr == pytest.approx(0.01) and trainer.base_lr == 1.0


def images(n=32, seed=0) -> Dataset:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 3, 32, 32, generator=g)
    y = torch.arange(n) % 10
    return Dataset("cifar10", x, y, x[:8], y[:8], "classification", 10, (3, 32, 32))


def test_random_crop_flip_is_a_padded_crop_and_a_mirror_per_image():
    x = torch.randn(6, 3, 32, 32)
    out = random_crop_flip(x, torch.Generator().manual_seed(5))
    # the same draws, image by image, the way torchvision crops and flips
    g = torch.Generator().manual_seed(5)
    offsets = torch.randint(0, 9, (2, 6), generator=g)
    flips = torch.rand(6, generator=g) < 0.5
    padded = torch.nn.functional.pad(x, (4, 4, 4, 4))
    for i in range(6):
        top, left = offsets[0, i].item(), offsets[1, i].item()
        crop = padded[i, :, top : top + 32, left : left + 32]
        expected = crop.flip(-1) if flips[i] else crop
        assert torch.equal(out[i], expected), i
    assert flips.any() and not flips.all()  # both cases were checked


def test_an_augmented_scheduled_run_resumes_bit_for_bit(tmp_path):
    cfg = RunConfig(
        dataset="cifar10",
        arch="cnn",
        depth=2,
        width=4,
        augment=True,
        lr_schedule="cosine",
        steps=12,
        batch_size=8,
        lr=0.1,
        optimizer="sgd",
        optimizer_options={"momentum": 0.9},
    )
    data = images()
    whole = Trainer(cfg, data)
    for _ in range(12):
        whole.step()
    first = Trainer(cfg, data)
    for _ in range(5):
        first.step()
    save_checkpoint(first, tmp_path / "c.pt")
    resumed = load_checkpoint(tmp_path / "c.pt", data=data)
    for _ in range(7):
        resumed.step()
    for a, b in zip(whole.model.parameters(), resumed.model.parameters(), strict=True):
        assert torch.equal(a, b)
    assert resumed.algorithm.lr == whole.algorithm.lr == pytest.approx(0.05 * (1 + math.cos(math.pi * 11 / 12)))


def test_augmentation_changes_what_a_step_sees_but_not_the_labels():
    data = images()
    plain = Trainer(RunConfig(dataset="cifar10", arch="cnn", depth=1, width=2, batch_size=8), data)
    shifted = Trainer(RunConfig(dataset="cifar10", arch="cnn", depth=1, width=2, batch_size=8, augment=True), data)
    (x0, y0), (x1, y1) = plain.batch(), shifted.batch()
    assert torch.equal(y0, y1) and x0.shape == x1.shape and not torch.equal(x0, x1)
