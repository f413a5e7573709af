"""Checkpoint and resume: the continuation equals the uninterrupted run bit for bit on the CPU."""

import pytest
import torch

from bpviz.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from bpviz.config import ConfigError, RunConfig
from bpviz.loop import every, train_loop
from bpviz.train import Trainer

CASES = {
    "sgd momentum": dict(optimizer="sgd", optimizer_options={"momentum": 0.9}),
    "adam": dict(optimizer="adam", lr=0.01),
    "sa_sgd all, running": dict(
        optimizer="sa_sgd",
        batch_norm=True,
        optimizer_options={"amend": "all", "statistics": "running", "refresh_every": 3},
    ),
    "sa_sgd bn_weights, running": dict(
        optimizer="sa_sgd", batch_norm=True, optimizer_options={"statistics": "running", "refresh_every": 3}
    ),
    "proxbp": dict(optimizer="proxbp", optimizer_options={"momentum": 0.5}),
    "sibp authors": dict(optimizer="sibp", activation="relu"),
    "sibp gauss_newton": dict(optimizer="sibp", activation="relu", optimizer_options={"solver": "gauss_newton"}),
}


def _config(**fields) -> RunConfig:
    base = dict(dataset="spirals", n_train=128, n_test=64, depth=2, width=8, batch_size=16, lr=0.1, steps=14, seed=3)
    return RunConfig(**(base | fields))


def _train_to(trainer: Trainer, step: int) -> None:
    end = train_loop(trainer, step, check=every(1))
    assert end.status == "finished" and trainer.step_count == step


@pytest.mark.parametrize("case", CASES)
def test_resumed_run_equals_the_uninterrupted_one(case, tmp_path):
    cfg = _config(**CASES[case])
    whole = Trainer(cfg)
    _train_to(whole, cfg.steps)

    first = Trainer(cfg)
    _train_to(first, 7)
    path = save_checkpoint(first, tmp_path / "run.pt")
    torch.manual_seed(12345)  # whatever happened to the global RNG in between must not matter
    resumed = load_checkpoint(path)
    assert resumed.step_count == 7
    _train_to(resumed, cfg.steps)
    for (name, a), b in zip(whole.model.state_dict().items(), resumed.model.state_dict().values()):
        assert torch.equal(a, b), name
    assert resumed.algorithm.lr == whole.algorithm.lr


def test_a_resumed_run_keeps_a_changed_step_size(tmp_path):
    trainer = Trainer(_config())
    _train_to(trainer, 3)
    trainer.algorithm.set_lr(0.37)
    resumed = load_checkpoint(save_checkpoint(trainer, tmp_path / "c.pt"))
    assert resumed.algorithm.lr == 0.37 and resumed.algorithm.optimizer.param_groups[0]["lr"] == 0.37


def test_resuming_under_another_config_is_refused_naming_the_fields(tmp_path):
    path = save_checkpoint(Trainer(_config()), tmp_path / "c.pt")
    assert load_checkpoint(path, _config(steps=100)).cfg.steps == 100  # going on longer is fine
    with pytest.raises(ConfigError, match=r"saved from another config: width, lr differ"):
        load_checkpoint(path, _config(width=9, lr=0.2))


def test_a_file_that_is_not_a_checkpoint_is_refused(tmp_path):
    bad = tmp_path / "bad.pt"
    bad.write_text("not a checkpoint")
    with pytest.raises(CheckpointError, match="not a readable bpviz checkpoint"):
        load_checkpoint(bad)
    torch.save({"something": 1}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="not a bpviz checkpoint"):
        load_checkpoint(tmp_path / "other.pt")


def test_a_finished_session_leaves_a_checkpoint_that_a_new_session_resumes_exactly(tmp_path):
    from bpviz.runs import load_run
    from bpviz.session import TrainingSession

    cfg = _config(optimizer="sgd", optimizer_options={"momentum": 0.9}, steps=60)
    whole = TrainingSession(cfg, runs_dir=tmp_path / "whole", eval_every=20)
    whole.start()
    assert whole.wait(60) and whole.state.value == "finished"
    half = TrainingSession(cfg.replace(steps=30), runs_dir=tmp_path / "half", eval_every=20)
    half.start()
    assert half.wait(60)
    checkpoint = half.writer.path / "checkpoint.pt"
    assert checkpoint.is_file()
    resumed = TrainingSession(cfg, runs_dir=tmp_path / "resumed", checkpoint=checkpoint, eval_every=20)
    assert resumed.step == 30
    resumed.start()
    assert resumed.wait(60) and resumed.step == 60
    for a, b in zip(whole.trainer.model.parameters(), resumed.trainer.model.parameters()):
        assert torch.equal(a, b)
    record = load_run(resumed.writer.path).records
    assert record[0] == {"step": 30, "resumed_from": str(checkpoint)}
    resumed.reset()  # a reset starts from scratch, not from the checkpoint
    assert resumed.step == 0
