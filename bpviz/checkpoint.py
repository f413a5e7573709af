"""Checkpoints: a run's model, algorithm and random-number state, so it continues bit for bit.

``save_checkpoint(trainer, path)`` writes one ``torch.save`` file (loadable with ``weights_only``):
the config the run started from, the step, ``model.state_dict()``, ``algorithm.state_dict()`` (as
``torch.optim``'s: momentum buffers, Adam's moments, SA-SGD's scales), the batch sampler's and
torch's generator states. ``load_checkpoint(path)`` rebuilds the ``Trainer`` at that step; on the
CPU its continuation equals the uninterrupted run exactly (tests/test_checkpoint.py).
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import torch

from .config import ConfigError, RunConfig
from .data import Dataset
from .train import Trainer

FORMAT = 1
#: fields that may differ between a checkpoint's config and the one it resumes under: how long
#: the run goes on, what it is called, how it reports and where it runs
RESUMABLE_CHANGES = ("steps", "name", "hessian_every", "num_threads", "device")


class CheckpointError(ValueError):
    """A file that is not a bpviz checkpoint, or one that does not fit the config given."""


def save_checkpoint(trainer: Trainer, path: str | Path) -> Path:
    path = Path(path)
    state: dict[str, Any] = {
        "format": FORMAT,
        "config": trainer.cfg.to_dict(),
        "step": trainer.step_count,
        "base_lr": trainer.base_lr,
        "model": trainer.model.state_dict(),
        "algorithm": trainer.algorithm.state_dict(),
        "sampler": trainer.sampler.get_state(),
        "torch_rng": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda_rng"] = torch.cuda.get_rng_state_all()
    tmp = path.with_name(path.name + ".tmp")
    torch.save(state, tmp)
    tmp.replace(path)  # a reader never sees half a checkpoint
    return path


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """The checkpoint's contents, checked to be one."""
    try:
        state = torch.load(Path(path), map_location="cpu", weights_only=True)
    except (OSError, RuntimeError, EOFError, pickle.UnpicklingError) as exc:
        first_line = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise CheckpointError(f"{path}: not a readable bpviz checkpoint ({first_line})") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a bpviz checkpoint (format {FORMAT} expected)")
    return state


def load_checkpoint(path: str | Path, cfg: RunConfig | None = None, data: Dataset | None = None) -> Trainer:
    """A ``Trainer`` at the checkpoint's step. ``cfg`` (default: the saved one) may change only
    ``RESUMABLE_CHANGES``; anything else is refused, naming the fields that differ."""
    state = read_checkpoint(path)
    saved = RunConfig.from_dict(state["config"])
    cfg = cfg or saved
    check_resumable(saved, cfg, path)
    trainer = Trainer(cfg, data)
    trainer.model.load_state_dict(state["model"])
    trainer.algorithm.load_state_dict(state["algorithm"])
    trainer.sampler.set_state(state["sampler"])
    torch.set_rng_state(state["torch_rng"])
    if "cuda_rng" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda_rng"])
    trainer.step_count = state["step"]
    trainer.base_lr = state.get("base_lr", trainer.algorithm.lr)  # older files: no schedule, the same
    return trainer


def check_resumable(saved: RunConfig, cfg: RunConfig, where: str | Path) -> None:
    """Refuse to go on with ``cfg`` from what ``saved`` started (at ``where``) when they differ in more
    than ``RESUMABLE_CHANGES``, naming the fields."""
    differ = [k for k, v in saved.to_dict().items() if k not in RESUMABLE_CHANGES and cfg.to_dict()[k] != v]
    if differ:
        raise ConfigError(
            f"{where} was saved from another config: {', '.join(differ)} differ "
            f"(a resumed run may change only {', '.join(RESUMABLE_CHANGES)})"
        )
