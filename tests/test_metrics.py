"""The metric glossary: everything the engine records or reports has one entry, with one meaning."""

from dataclasses import replace

import pytest
import torch

from bpviz import metrics
from bpviz.compare import result_row
from bpviz.config import RunConfig
from bpviz.hessian_report import local_hessian_report
from bpviz.models import build_model
from bpviz.optim import ALGORITHMS
from bpviz.train import RunResult, run


def test_every_entry_has_a_meaning_and_a_unit_and_names_resolve_to_their_entry():
    assert all(m.meaning and m.unit for m in metrics.GLOSSARY.values())
    assert metrics.lookup("cond/input/3").pattern == "cond/{wrt}/{block}"
    assert metrics.lookup(metrics.cond_name("weight", 0, bound=True)).pattern == "cond_lower_bound/{wrt}/{block}"
    assert metrics.lookup(metrics.lambda_max_name("input", 12)).pattern == "lambda_max/{wrt}/{block}"
    assert metrics.lookup(metrics.grad_norm_name(2)).pattern == "grad_norm/{block}"
    assert metrics.lookup(metrics.scale_name("head")).pattern == "scale/head"
    assert metrics.lookup(metrics.scale_name(1)).pattern == "scale/{block}"
    for unknown in ("loss", "cond/bias/0", "cond/input/x", "scale/", "batch_loss/0"):
        with pytest.raises(KeyError, match="glossary"):
            metrics.lookup(unknown)
    with pytest.raises(ValueError, match="wrt"):
        metrics.cond_name("bias", 0)


def test_the_optimizers_declared_scalars_are_in_the_glossary():
    for cls in ALGORITHMS.values():
        assert set(cls.SCALARS) <= set(metrics.GLOSSARY), cls.name


@pytest.mark.parametrize(
    "optimizer,options,batch_norm",
    [
        ("sgd", {}, False),
        ("adam", {}, False),
        ("sa_sgd", {"amend": "all"}, True),
        ("sa_sgd", {}, True),
        ("proxbp", {}, False),
        ("proxbp", {"solver": "cg"}, False),
        ("sibp", {}, False),
        ("sibp", {"solver": "gauss_newton", "inner_iters": 2}, False),
    ],
)
def test_what_a_step_reports_is_what_its_algorithm_declares(optimizer, options, batch_norm):
    model = build_model(RunConfig(depth=2, width=4, dtype="float64", batch_norm=batch_norm), (3,), 2)
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(8, 3, generator=g, dtype=torch.float64), torch.randint(0, 2, (8,), generator=g)
    cls = ALGORITHMS[optimizer]
    scalars = cls(model, 0.1, **options).step(x, y).scalars
    assert {metrics.lookup(name).pattern for name in scalars} <= set(cls.SCALARS)


def test_the_local_hessian_reports_names_are_in_the_glossary():
    model = build_model(RunConfig(depth=2, width=4, dtype="float64", batch_norm=True), (3,), 2)
    report = local_hessian_report(model, torch.randn(8, 3, dtype=torch.float64))
    exact = report.named_values()
    assert set(exact) == {f"{what}/{wrt}/{b}" for what in ("cond", "lambda_max") for wrt in metrics.WRT for b in (0, 1)}
    bounded = replace(report, stats=[replace(s, method="lanczos") for s in report.stats]).named_values()
    assert {metrics.lookup(n).pattern for n in bounded} == {
        "cond_lower_bound/{wrt}/{block}",
        "lambda_max_lower_bound/{wrt}/{block}",
    }


def test_headless_records_and_compare_rows_use_glossary_names():
    cfg = RunConfig(n_train=64, n_test=32, depth=1, width=4, steps=4, batch_size=8, device="cpu")
    result = run(cfg, eval_every=2)
    names = {k for record in result.records for k in record} - {"step"}
    assert names == {"batch_loss", "train_loss", "test_loss", "train_accuracy", "test_accuracy"}
    row = result_row(result, 2, dataset=cfg.dataset)
    descriptors = {"dataset", "algorithm", "lr", "status"}  # what the run was, not what it measured
    for name in set(row) - descriptors:
        metrics.lookup(name)
    records = [result.records[0], {"step": 1, "batch_loss": float("nan")}]
    diverged = result_row(RunResult(cfg, records, "diverged", diverged_at=1), 2)
    assert set(diverged) == set(row) - {"dataset"}
