"""One run's moving parts in one object: data on the device, model, algorithm, batch sampler.

``Trainer`` is the synchronous core that both the headless tools (``bpviz compare``, ``bpviz train``)
and the live ``TrainingSession`` drive; it never synchronises with the device on its own, so the
caller decides when to read the loss (every few steps), and with it when to check for divergence.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from .augment import random_crop_flip
from .config import RunConfig
from .data import Dataset, load_dataset
from .device import resolve_device
from .loop import Hook, every, train_loop
from .models import BlockNet, build_model, network_loss
from .optim import Algorithm, StepResult, make_algorithm
from .schedules import lr_factor

#: samples per forward pass when evaluating: a whole CIFAR split through VGG13 at once would not fit
#: a GPU's memory
EVAL_BATCH = 500


class Trainer:
    """Trains ``cfg``'s model with ``cfg``'s algorithm, one mini-batch per ``step()``."""

    def __init__(self, cfg: RunConfig, data: Dataset | None = None):
        self.cfg = cfg
        if cfg.num_threads:  # process-wide: a worker's share of the cores (two threads each on two cores crawl)
            torch.set_num_threads(cfg.num_threads)
        self.device = resolve_device(cfg.device)
        self.data = data or load_dataset(cfg)
        self.x_train, self.y_train = self.data.x_train.to(self.device), self.data.y_train.to(self.device)
        self.x_test, self.y_test = self.data.x_test.to(self.device), self.data.y_test.to(self.device)
        torch.manual_seed(cfg.seed)
        self.model: BlockNet = build_model(cfg, self.data.input_shape, self.data.n_outputs).to(self.device)
        self.algorithm: Algorithm = make_algorithm(cfg, self.model)
        self.sampler = torch.Generator().manual_seed(cfg.seed + 1)
        self.step_count = 0
        #: the step size a user set (cfg.lr, or a live change); the schedule scales it at each step
        self.base_lr = cfg.lr

    def set_lr(self, lr: float) -> None:
        """A new step size from now on, still scaled by the run's schedule."""
        self.base_lr = lr
        self.algorithm.set_lr(lr * lr_factor(self.cfg.lr_schedule, self.step_count, self.cfg.steps))

    def batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        """A mini-batch drawn with replacement (indices made on the CPU: no device sync), augmented
        when the run says so (its draws from the same generator)."""
        idx = torch.randint(0, self.x_train.shape[0], (self.cfg.batch_size,), generator=self.sampler)
        idx = idx.to(self.device, non_blocking=True)
        x = self.x_train[idx]
        return (random_crop_flip(x, self.sampler) if self.cfg.augment else x), self.y_train[idx]

    def step(self) -> StepResult:
        if self.cfg.lr_schedule != "constant":
            self.algorithm.set_lr(self.base_lr * lr_factor(self.cfg.lr_schedule, self.step_count, self.cfg.steps))
        result = self.algorithm.step(*self.batch())
        self.step_count += 1
        return result

    @torch.no_grad()
    def evaluate(self, split: str = "test", max_samples: int | None = 4096) -> dict[str, float]:
        """Loss (and accuracy for classification) on the first ``max_samples`` of a split (all of it
        for None), BN in eval mode; in batches of ``EVAL_BATCH``, summed on the device and read once."""
        x, y = (self.x_test, self.y_test) if split == "test" else (self.x_train, self.y_train)
        if max_samples is not None:
            x, y = x[:max_samples], y[:max_samples]
        loss_sum = torch.zeros((), dtype=torch.float64, device=self.device)
        correct = torch.zeros((), dtype=torch.int64, device=self.device)
        self.model.eval()
        try:
            for start in range(0, len(x), EVAL_BATCH):
                out, target = self.model(x[start : start + EVAL_BATCH]), y[start : start + EVAL_BATCH]
                loss_sum += network_loss(out, target).double() * len(target)  # every loss is a mean
                if self.data.task == "classification":
                    correct += (out.argmax(1) == target).sum()
        finally:
            self.model.train()
        metrics = {"loss": loss_sum.item() / len(x)}
        if self.data.task == "classification":
            metrics["accuracy"] = correct.item() / len(x)
        return metrics


@dataclass
class RunResult:
    """A finished headless run: its records and how it ended."""

    cfg: RunConfig
    records: list[dict] = field(default_factory=list)
    status: str = "finished"  # or "diverged"
    diverged_at: int | None = None

    @property
    def final(self) -> dict:
        return self.records[-1] if self.records else {}


def run(cfg: RunConfig, data: Dataset | None = None, eval_every: int = 50) -> RunResult:
    """Train ``cfg.steps`` steps headless, recording the batch loss and train/test metrics every
    ``eval_every`` steps; stops when the loop's divergence rule fires (status ``diverged``)."""
    trainer = Trainer(cfg, data)
    result = RunResult(cfg=cfg)

    def evaluate() -> dict:
        return {f"{split}_{k}": v for split in ("train", "test") for k, v in trainer.evaluate(split).items()}

    result.records.append({"step": 0, **evaluate()})
    schedule = every(eval_every, cfg.steps)
    hooks = [
        Hook(
            schedule,
            lambda step, out: result.records.append({"step": step, "batch_loss": out.numbers["batch_loss"]}),
            on_divergence=True,
        ),
        Hook(schedule, lambda step, out: result.records[-1].update(evaluate())),
    ]
    end = train_loop(trainer, cfg.steps, hooks, check=schedule)
    if end.status == "diverged":
        result.status, result.diverged_at = "diverged", end.step
    return result
