"""Small helpers behind the teaching notebooks (``notebooks/01``–``04``).

The notebooks hold prose, settings and plots; every computation they show is one call into this
module or the rest of the engine, so the numbers they print are the same code the tests check.
Like the engine, this module needs only torch and numpy (the notebooks draw with plotly themselves).

Each notebook prints its key numbers as ``RESULT <name> <value>`` lines (:func:`result`), which
``tests/test_notebooks.py`` parses.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Iterable, Sequence

import numpy as np
import torch

from . import loop
from .backmatching import back_matching_step, back_matching_targets
from .config import RunConfig
from .data import Dataset
from .hessian_report import REPORT_BN_EPS, ZERO_RTOL, below_floor, local_hessian_report
from .local_hessian import local_hessian_spectrum
from .models import ACTIVATIONS, BlockNet, build_model, network_loss
from .train import Trainer

# --- printing ----------------------------------------------------------------------------------


def result(name: str, value) -> None:
    """Print one machine-readable ``RESULT name value`` line, at full precision (None prints as nan)."""
    if value is None:
        value = math.nan
    if isinstance(value, (bool, np.bool_)):
        value = int(value)
    if isinstance(value, (np.floating, np.integer)):
        value = value.item()
    print(f"RESULT {name} {value!r}")


def _cell(value, digits: int) -> str:
    if isinstance(value, bool) or value is None:
        return str(value)
    if isinstance(value, (float, np.floating)):
        return f"{value:.{digits}g}"
    return str(value)


def format_table(rows: Sequence[dict], columns: Sequence[str] | None = None, digits: int = 4) -> str:
    """A plain-text table (no pandas needed): one row per dict, numbers to ``digits`` significant digits."""
    if not rows:
        return "(no rows)"
    columns = list(columns or rows[0])
    cells = [[_cell(row.get(c, ""), digits) for c in columns] for row in rows]
    widths = [max(len(c), *(len(r[i]) for r in cells)) for i, c in enumerate(columns)]
    lines = ["  ".join(c.rjust(w) for c, w in zip(columns, widths)), "  ".join("-" * w for w in widths)]
    lines += ["  ".join(v.rjust(w) for v, w in zip(r, widths)) for r in cells]
    return "\n".join(lines)


def geometric_mean(values: Iterable[float]) -> float:
    vals = np.asarray([v for v in values if np.isfinite(v) and v > 0], dtype=np.float64)
    return float(np.exp(np.log(vals).mean())) if len(vals) else math.nan


# --- 01: back-matching ----------------------------------------------------------------------------


def sgd_reference(model: BlockNet, x: torch.Tensor, y: torch.Tensor, lr: float) -> BlockNet:
    """A copy of ``model`` after one plain ``torch.optim.SGD`` step of size ``lr`` on the batch loss."""
    ref = copy.deepcopy(model)
    opt = torch.optim.SGD(ref.parameters(), lr=lr)
    opt.zero_grad()
    network_loss(ref(x), y).backward()
    opt.step()
    return ref


def max_parameter_difference(a: BlockNet, b: BlockNet) -> float:
    return max((p - q).abs().max().item() for p, q in zip(a.parameters(), b.parameters()))


def activation_gradients(model: BlockNet, x: torch.Tensor, y: torch.Tensor) -> list[torch.Tensor]:
    """dl/dz_b for every stage output (the blocks, then the logits), by autograd through the network."""
    z = model.prepare(x)
    outputs = []
    for block in model.blocks:
        z = block.local_forward(z)
        outputs.append(z)
    outputs.append(model.head.local_forward(z))
    return [g.detach() for g in torch.autograd.grad(network_loss(outputs[-1], y), outputs)]


def stage_table(model: BlockNet, x: torch.Tensor, y: torch.Tensor, lr: float) -> list[dict]:
    """Per stage: the size of its output, of its residual z_b - z~_b, its back-matching loss at the
    current point (1/2 |z_b - z~_b|^2) and how far the residual is from lr * dl/dz_b."""
    bm = back_matching_targets(model, x, y, lr)
    grads = activation_gradients(model, x, y)
    rows = []
    for b, (out, res, g) in enumerate(zip(bm.outputs, bm.residuals(), grads)):
        rows.append(
            {
                "stage": f"block {b}" if b < len(model.blocks) else "head",
                "|z_b|": out.norm().item(),
                "|z_b - z~_b|": res.norm().item(),
                "local loss": 0.5 * res.pow(2).sum().item(),
                "max|r - lr*dl/dz|": (res - lr * g).abs().max().item(),
            }
        )
    return rows


def check_back_matching(cfg: RunConfig, data: Dataset, n: int = 64, lr: float = 0.5) -> dict:
    """Build ``cfg``'s model, then compare one back-matching step (a unit gradient step on every
    block's local losses, top-down) with one SGD step of size ``lr`` on the same batch."""
    model = build_model(cfg, data.input_shape, data.n_outputs)
    dtype = model.head.linear.weight.dtype
    x, y = data.x_train[:n].to(dtype), data.y_train[:n]
    rows = stage_table(model, x, y, lr)
    reference = sgd_reference(model, x, y, lr)
    before = copy.deepcopy(model)
    back_matching_step(model, x, y, lr)
    return {
        "batch_norm": cfg.batch_norm,
        "skip": cfg.skip,
        "dtype": cfg.dtype,
        "max |theta_BM - theta_SGD|": max_parameter_difference(model, reference),
        "max |step|": max_parameter_difference(before, reference),
        "max target gap": max(r["max|r - lr*dl/dz|"] for r in rows),
    }


# --- 02: local Hessians and the tricks ------------------------------------------------------------


def condition_number(eigs: np.ndarray | torch.Tensor) -> float:
    """lambda_max / smallest nonzero lambda, zeros being below ``ZERO_RTOL`` * lambda_max (as the report)."""
    e = torch.as_tensor(eigs, dtype=torch.float64).cpu().numpy()
    lmax = float(e.max())
    nonzero = e[e > ZERO_RTOL * lmax]
    return lmax / float(nonzero.min()) if len(nonzero) and lmax > 0 else math.nan


def spectrum_rows(model: BlockNet, x: torch.Tensor, wrt: str, **extra) -> list[dict]:
    """Exact spectrum summary of every block's ``wrt`` local Hessian on the batch ``x`` (BN as the report
    takes it); ``<floor`` counts the eigenvalues the zero floor cut (where not 0, kappa is a lower bound)."""
    rows = []
    for b, z in enumerate(model.block_inputs(x)[: len(model.blocks)]):
        e = local_hessian_spectrum(model, x, b, wrt=wrt, bn_eps=REPORT_BN_EPS).cpu().numpy()
        lmax = float(e.max())
        nonzero = e[e > ZERO_RTOL * lmax]
        rows.append(
            {
                **extra,
                "block": b,
                "lambda_min>0": float(nonzero.min()),
                "lambda_max": lmax,
                "kappa": condition_number(e),
                "mean lambda": float(e.mean()),
                "<floor": below_floor(e, z.shape[0] if wrt == "weight" else z[0].numel(), z.dtype),
            }
        )
    return rows


def marchenko_pastur_condition(q: float) -> float:
    """kappa of W^T W for a large Gaussian m x d matrix, q = d/m < 1: ((1 + sqrt q) / (1 - sqrt q))^2."""
    return ((1 + math.sqrt(q)) / (1 - math.sqrt(q))) ** 2


def gram_eigenvalues(w: torch.Tensor) -> np.ndarray:
    """Eigenvalues of W^T W (the input Hessian of a linear block, per sample)."""
    w = w.detach().double().flatten(1)
    return torch.linalg.eigvalsh(w.T @ w).numpy()


def mean_spike(h: torch.Tensor) -> dict:
    """The weight Hessian of a linear layer is sum_i h_i h_i^T = n (Sigma + mean mean^T); BN replaces it
    by the centred n Sigma. Returns both top eigenvalues, the spike n |mean|^2, the alignment of the
    uncentred top eigenvector with the mean, and both condition numbers."""
    h = h.detach().double().flatten(1)
    n = h.shape[0]
    mean = h.mean(0)
    e_raw, v_raw = torch.linalg.eigh(h.T @ h)
    e_cen = torch.linalg.eigvalsh((h - mean).T @ (h - mean))
    return {
        "n |mean|^2": n * mean.pow(2).sum().item(),
        "lambda_max uncentred": e_raw[-1].item(),
        "lambda_max centred": e_cen[-1].item(),
        "cos(top eigenvector, mean)": abs(v_raw[:, -1] @ mean).item() / mean.norm().item(),
        "kappa uncentred": condition_number(e_raw),
        "kappa centred": condition_number(e_cen),
    }


def _weight_hessian_eigenvalues(slope: torch.Tensor, h: torch.Tensor) -> np.ndarray:
    """Spectrum of the block-diagonal sum_u J_u^T J_u, J_u = diag(slope_u) h (a Linear block w.r.t.
    its weight, one block per output unit u)."""
    J = slope.T[:, :, None] * h[None]  # (m, n, d)
    return torch.linalg.eigvalsh(J.transpose(1, 2) @ J).reshape(-1).numpy()


def mean_spike_share(plain: BlockNet, with_bn: BlockNet, x: torch.Tensor) -> list[dict]:
    """How much of BN's drop in weight-Hessian kappa removing the mean spike alone explains.

    Per Linear block b >= 1 (block 0's input, the standardised data, has no mean to remove):
    lambda_max and kappa of the network without BN; of the same block with its input centred and
    everything else (weights, activation slopes) kept, which removes exactly the spike n mean mean^T;
    and of the BN network. ``spike share`` is the fraction of the drop in log10 kappa that the
    centring gives (negative: centring alone raises kappa). ``<floor`` counts, for the three spectra
    in that order, the eigenvalues the zero floor cut (where not 0, that kappa is a lower bound)."""
    rows = []
    zs = plain.block_inputs(x)
    for b in range(1, len(plain.blocks)):
        blk, h = plain.blocks[b], zs[b].detach().double()
        with torch.no_grad():
            slope = ACTIVATIONS[blk.activation][1](blk.affine_map(zs[b], blk.weight)).double()
        e_plain = _weight_hessian_eigenvalues(slope, h)
        e_centred = _weight_hessian_eigenvalues(slope, h - h.mean(0))
        e_bn = local_hessian_spectrum(with_bn, x, b, wrt="weight", bn_eps=REPORT_BN_EPS).numpy()
        k_plain, k_centred, k_bn = map(condition_number, (e_plain, e_centred, e_bn))
        cut = [below_floor(e, h.shape[0], zs[b].dtype) for e in (e_plain, e_centred, e_bn)]
        drop = math.log10(k_plain / k_bn)
        rows.append(
            {
                "block": b,
                "lambda_max no BN": e_plain.max(),
                "lambda_max centred only": e_centred.max(),
                "lambda_max BN": e_bn.max(),
                "kappa no BN": k_plain,
                "kappa centred only": k_centred,
                "kappa BN": k_bn,
                "spike share": math.log10(k_plain / k_centred) / drop if drop > 0 else math.nan,
                "<floor": "/".join(map(str, cut)),
            }
        )
    return rows


def branch_norms(model: BlockNet, x: torch.Tensor) -> list[float]:
    """epsilon_b = max over samples of |J_F|_2, J_F = diag(act'(g_i)) W_b the residual branch's Jacobian
    (MLP blocks without BN, where every sample is its own block)."""
    eps = []
    for blk, z in zip(model.blocks, model.block_inputs(x)):
        if blk.bn is not None or blk.kind != "linear":
            raise ValueError("branch_norms needs MLP blocks without batch norm")
        with torch.no_grad():
            slope = ACTIVATIONS[blk.activation][1](blk.affine_map(z, blk.weight)).double()
            J = slope[:, :, None] * blk.weight.detach().double()[None]
            eps.append(torch.linalg.matrix_norm(J, ord=2).max().item())
    return eps


def residual_check(model: BlockNet, x: torch.Tensor) -> list[dict]:
    """Per block: epsilon = |J_F|_2 and the input Hessian's extreme eigenvalues against the bound
    [(1 - eps)^2, (1 + eps)^2] that (I + J_F)^T (I + J_F) must satisfy (``<floor``: as ``spectrum_rows``)."""
    rows = []
    for b, (eps, z) in enumerate(zip(branch_norms(model, x), model.block_inputs(x))):
        e = local_hessian_spectrum(model, x, b, wrt="input").cpu().numpy()
        lo, hi = (1 - eps) ** 2, (1 + eps) ** 2
        rows.append(
            {
                "block": b,
                "epsilon": eps,
                "bound lo": lo,
                "lambda_min": float(e.min()),
                "lambda_max": float(e.max()),
                "bound hi": hi,
                "kappa": condition_number(e),
                "inside": bool(lo - 1e-12 <= e.min() and e.max() <= hi + 1e-12),
                "<floor": below_floor(e, z[0].numel(), z.dtype),
            }
        )
    return rows


def train(cfg: RunConfig, steps: int | None = None, data: Dataset | None = None) -> Trainer:
    """A ``Trainer`` for ``cfg`` after ``steps`` (default ``cfg.steps``) training steps."""
    trainer = Trainer(cfg, data)
    for _ in range(cfg.steps if steps is None else steps):
        trainer.step()
    return trainer


def trick_study(configs: dict[str, RunConfig], steps: int, n_samples: int = 32) -> tuple[list[dict], dict]:
    """For every named config: each block's input-Hessian condition number at initialisation and
    after ``steps`` SGD steps (``local_hessian_report`` on the first ``n_samples`` training samples),
    and the train loss. Returns summary rows and, per name, the per-block kappas for plotting; a row
    says whether any of its kappas is only a lower bound (a Krylov bound, or cut by the zero floor)."""
    rows, per_block = [], {}
    for name, cfg in configs.items():
        trainer = Trainer(cfg)
        x = trainer.x_train[:n_samples]
        before = local_hessian_report(trainer.model, x, max_samples=n_samples)
        loss0 = trainer.evaluate("train")["loss"]
        for _ in range(steps):
            trainer.step()
        after = local_hessian_report(trainer.model, x, max_samples=n_samples)
        kappas = {
            when: [s.condition_number for s in rep.stats if s.wrt == "input"]
            for when, rep in (("init", before), ("trained", after))
        }
        per_block[name] = kappas
        rows.append(
            {
                "variant": name,
                "kappa_in init (geo-mean)": geometric_mean(kappas["init"]),
                f"kappa_in after {steps} (geo-mean)": geometric_mean(kappas["trained"]),
                "any kappa a bound": any(
                    s.kappa_is_bound for rep in (before, after) for s in rep.stats if s.wrt == "input"
                ),
                "train loss init": loss0,
                f"train loss after {steps}": trainer.evaluate("train")["loss"],
            }
        )
    return rows, per_block


# --- 03: SA-SGD -------------------------------------------------------------------------------------


def train_recording(
    cfg: RunConfig, every: int = 10, data: Dataset | None = None, lr_schedule: dict[int, float] | None = None
) -> dict:
    """Train ``cfg`` recording, every ``every`` steps, the batch loss, the algorithm's scalars
    (SA-SGD's ``scale/<block>``) and each block's weight norm |W_b|_F; ``lr_schedule`` maps a step to
    a new learning rate. Ends with the train and test metrics (BN in eval mode); stops when the
    loop's divergence rule fires."""
    trainer = Trainer(cfg, data)
    record: dict = {"step": [], "batch_loss": [], "scalars": {}, "weight_norms": {}, "status": "finished"}

    def keep(step: int, out) -> None:
        record["step"].append(step)
        record["batch_loss"].append(out.numbers["batch_loss"])
        for name, value in out.scalars.items():
            record["scalars"].setdefault(name, []).append(float(value))
        for b, block in enumerate(trainer.model.blocks):
            record["weight_norms"].setdefault(f"block {b}", []).append(block.weight.detach().norm().item())

    def schedule_lr() -> bool:
        if lr_schedule and trainer.step_count + 1 in lr_schedule:
            trainer.algorithm.set_lr(lr_schedule[trainer.step_count + 1])
        return True

    due = loop.every(every, cfg.steps)
    end = loop.train_loop(
        trainer, cfg.steps, [loop.Hook(due, keep, on_divergence=True)], check=due, before_step=schedule_lr
    )
    if end.status == "diverged":
        record["status"] = "diverged"
    record["train"] = trainer.evaluate("train")
    record["test"] = trainer.evaluate("test")
    return record


# --- 04: SIBP vs ProxBP vs SGD ------------------------------------------------------------------------


def sweep_table(sweep: dict) -> str:
    """One line per step size, one column per algorithm: final train loss / test accuracy."""
    algorithms = list(dict.fromkeys(r["algorithm"] for r in sweep["rows"]))
    table = []
    for lr in sorted({r["lr"] for r in sweep["rows"]}):
        line: dict = {"step size": f"{lr:g}"}
        for a in algorithms:
            r = next(r for r in sweep["rows"] if r["algorithm"] == a and r["lr"] == lr)
            if r["status"] == "diverged":
                line[a] = f"diverged (step {r['diverged_at']})"
            else:
                tail = "" if r["stable"] else " unstable"
                line[a] = f"{r['final_train_loss']:.3g} / {r['final_test_accuracy']:.3f}{tail}"
        table.append(line)
    return format_table(table)


def curve(records: list[dict], key: str) -> dict[str, list]:
    """One metric from a run's records (the evaluated points only) as ``{"x": steps, "y": values}``,
    ready for ``fig.add_scatter(**curve(...))``."""
    pts = [(r["step"], r[key]) for r in records if key in r]
    return {"x": [s for s, _ in pts], "y": [v for _, v in pts]}
