"""The glossary: every metric name the engine records or reports, each with one meaning.

A record (the live session's history and events, a saved run's ``metrics.jsonl``, ``train.run``'s
records) holds a ``step`` and values under these names; ``bpviz compare``'s rows summarise a run under
the ``initial_`` / ``final_`` names. Per-block names are built by the helpers below, so the engine, the
run store and the UI spell them alike. One name, one meaning: the loss of the mini-batch a step trained
on is ``batch_loss``; ``train_loss`` is only ever the loss on the training split.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import torch

from .device import read_numbers

if TYPE_CHECKING:
    from .optim import StepResult

#: what a local Hessian is taken with respect to: the block's main weight, or its input
WRT = ("weight", "input")
_LOSS = "nats (cross-entropy) or squared target units (MSE), a mean over the samples"
_CURVATURE = "squared (block output / weight or input) units: J^T J of the block map"
_NO_UNIT = "dimensionless"


@dataclass(frozen=True)
class Metric:
    """One glossary entry; ``pattern`` is the name, with ``{wrt}`` and ``{block}`` in per-block names."""

    pattern: str
    meaning: str
    unit: str


GLOSSARY: dict[str, Metric] = {
    m.pattern: m
    for m in (
        # --- every step that is recorded --------------------------------------------------------------
        Metric(
            "batch_loss",
            "network_loss on the mini-batch the step trained on, before the step (StepResult.loss, "
            "BN in training mode)",
            _LOSS,
        ),
        Metric(
            "grad_norm/{block}",
            "Frobenius norm of the block's main weight's .grad after the step: the batch loss's "
            "gradient as the algorithm left it (SA-SGD's amended one); absent where the algorithm leaves none "
            "(ProxBP, SIBP)",
            "loss per weight unit",
        ),
        # --- evaluations (BN in eval mode) ------------------------------------------------------------
        Metric("train_loss", "network_loss on the training split (its first samples), after the step", _LOSS),
        Metric("test_loss", "network_loss on the test split (its first samples), after the step", _LOSS),
        Metric(
            "train_accuracy",
            "fraction of the training split's (first) samples classified correctly; classification only",
            "fraction in [0, 1]",
        ),
        Metric(
            "test_accuracy",
            "fraction of the test split's (first) samples classified correctly; classification only",
            "fraction in [0, 1]",
        ),
        # --- local-Hessian reports --------------------------------------------------------------------
        Metric(
            "cond/{wrt}/{block}",
            "condition number lambda_max / smallest nonzero eigenvalue of the block's local "
            "Hessian with respect to wrt ('weight' or 'input'), from the exact spectrum; BN taken without "
            "its eps, as the paper analyses it, so the directions BN normalises away are zeros",
            _NO_UNIT,
        ),
        Metric(
            "cond_lower_bound/{wrt}/{block}",
            "a lower bound on cond/{wrt}/{block}, recorded instead of it where the exact spectrum is "
            "too large to compute live (certified, from Lanczos) or goes on below the zero floor of "
            "1e-9 lambda_max (lambda_max over the smallest eigenvalue above the floor)",
            _NO_UNIT,
        ),
        Metric(
            "lambda_max/{wrt}/{block}",
            "the largest eigenvalue of that local Hessian, from the exact spectrum",
            _CURVATURE,
        ),
        Metric(
            "lambda_max_lower_bound/{wrt}/{block}",
            "a certified lower bound on lambda_max/{wrt}/{block}, recorded "
            "instead of it where the exact spectrum is too large to compute live",
            _CURVATURE,
        ),
        # --- the algorithms' own scalars (Algorithm.SCALARS) ------------------------------------------
        Metric(
            "scale/{block}",
            "SA-SGD: the factor eta_b / eta the block's weight gradient is multiplied by (the mean "
            "over channels; 1 where it is not amended)",
            _NO_UNIT,
        ),
        Metric("scale/head", "SA-SGD: that factor for the head's weight", _NO_UNIT),
        Metric(
            "cg_residual",
            "ProxBP (solver 'cg'), SIBP (solver 'gauss_newton'): the largest relative residual "
            "|r| / |right-hand side| of the step's conjugate-gradient solves, over the blocks",
            _NO_UNIT,
        ),
        Metric(
            "factor_failed",
            "ProxBP (solver 'exact'), SIBP (solver 'gauss_newton'): how many of the step's Cholesky "
            "factorisations failed (the update is then NaN)",
            "count",
        ),
        Metric(
            "gn_step",
            "SIBP (solver 'gauss_newton', inner_iters > 1): the largest, over the hidden layers, last "
            "Gauss-Newton correction relative to the layer's whole step",
            _NO_UNIT,
        ),
        Metric(
            "fr_applied",
            "SIBP (solver 'authors'): the fraction of the step's Fletcher-Reeves iterations, over all "
            "layers, that applied a step",
            "fraction in [0, 1]",
        ),
        # --- bpviz compare's rows, one per run --------------------------------------------------------
        Metric("initial_train_loss", "train_loss before the first step", _LOSS),
        Metric("final_train_loss", "train_loss after the last step (NaN when the run diverged)", _LOSS),
        Metric(
            "final_test_accuracy",
            "test_accuracy after the last step (NaN when the run diverged, or for regression)",
            "fraction in [0, 1]",
        ),
        Metric("diverged_at", "the first step whose batch loss or parameters were NaN/Inf (None: never)", "step"),
        Metric(
            "stable",
            "the run finished, lowered train_loss, and (classification) reached a train_accuracy of at "
            "least twice chance",
            "true or false",
        ),
    )
}

_PLACEHOLDER = {"{wrt}": "|".join(WRT), "{block}": r"\d+"}


def _regex(pattern: str) -> re.Pattern[str]:
    parts = re.split(r"(\{wrt\}|\{block\})", pattern)
    return re.compile("".join(f"(?:{_PLACEHOLDER[p]})" if p in _PLACEHOLDER else re.escape(p) for p in parts))


_MATCHERS = [(_regex(pattern), metric) for pattern, metric in GLOSSARY.items()]


def lookup(name: str) -> Metric:
    """The entry a recorded name belongs to (``cond/input/3`` -> ``cond/{wrt}/{block}``); KeyError if none."""
    for regex, metric in _MATCHERS:
        if regex.fullmatch(name):
            return metric
    raise KeyError(f"{name!r} is not in the metric glossary (bpviz.metrics.GLOSSARY)")


def _checked_wrt(wrt: str) -> str:
    if wrt not in WRT:
        raise ValueError(f"wrt must be one of {WRT}, got {wrt!r}")
    return wrt


def grad_norm_name(block: int) -> str:
    return f"grad_norm/{block}"


def cond_name(wrt: str, block: int, bound: bool = False) -> str:
    """``cond/{wrt}/{block}``, or ``cond_lower_bound/...`` when the number is only a bound."""
    return f"cond{'_lower_bound' if bound else ''}/{_checked_wrt(wrt)}/{block}"


def lambda_max_name(wrt: str, block: int, bound: bool = False) -> str:
    """``lambda_max/{wrt}/{block}``, or ``lambda_max_lower_bound/...`` when the number is only a bound."""
    return f"lambda_max{'_lower_bound' if bound else ''}/{_checked_wrt(wrt)}/{block}"


def scale_name(block: int | Literal["head"]) -> str:
    """``scale/{block}``, or ``scale/head`` for the output layer."""
    return f"scale/{block}"


def step_metrics(result: StepResult, blocks: Sequence[torch.nn.Module]) -> dict[str, float]:
    """What a recorded step says: the batch loss, the algorithm's scalars and each block's weight
    gradient norm (when every block has one), read from the device in one sync."""
    grads = [b.weight.grad for b in blocks]
    values = {"batch_loss": result.loss, **result.scalars}
    if all(g is not None for g in grads):
        values.update({grad_norm_name(i): n for i, n in enumerate(torch._foreach_norm(grads))})
    return dict(zip(values, read_numbers(values.values(), result.loss.device)))
