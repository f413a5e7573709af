"""The engine on CUDA, against the same computation on the CPU. Skipped where there is no GPU (CI has
none); run on a GPU machine with ``python -m pytest tests/test_cuda.py`` (bench/gpu.sh does)."""

from pathlib import Path

import pytest
import torch

from bpviz.device import resolve_device
from bpviz.hessian_report import local_hessian_report
from bpviz.presets import PRESETS
from bpviz.reproduce import EXPERIMENTS, reproduce
from bpviz.session import TrainingSession
from bpviz.train import Trainer

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")


def test_a_bn_cnn_report_on_cuda_equals_the_cpu_one_lanczos_bounds_included():
    """sgd-bn's BN blocks couple the batch: their input Hessians go to block Lanczos, whose start
    vectors are drawn on the CPU and whose Krylov basis must live on the operator's device."""
    reports = {}
    for device in ("cpu", "cuda"):
        trainer = Trainer(PRESETS["sgd-bn"].replace(device=device))
        reports[device] = local_hessian_report(trainer.model, trainer.x_train[:64], max_samples=None)
    methods = {s.method for s in reports["cuda"].stats}
    assert methods == {"exact", "lanczos"}
    for cpu, gpu in zip(reports["cpu"].stats, reports["cuda"].stats, strict=True):
        assert (cpu.block, cpu.wrt, cpu.method, cpu.size) == (gpu.block, gpu.wrt, gpu.method, gpu.size)
        for field in ("lambda_max", "condition_number", "trace"):
            assert getattr(gpu, field) == pytest.approx(getattr(cpu, field), rel=2e-3), (cpu.block, cpu.wrt, field)


@pytest.mark.parametrize("name", list(PRESETS))
def test_every_preset_runs_live_on_cuda_with_its_reports(name):
    session = TrainingSession(PRESETS[name].replace(steps=40, device="cuda"))
    session.start()
    assert session.wait(timeout=300)
    assert session.state.value in ("finished", "diverged"), session.message
    assert session.trainer.device.type == "cuda" and session.reports_total >= 1


@pytest.mark.parametrize("name", list(EXPERIMENTS))
def test_each_tiny_reproduction_runs_on_cuda(tmp_path: Path, name):
    result, _ = reproduce(name, tmp_path, is_tiny=True, quiet=True)
    for run in result["runs"]:
        assert run["summary"]["state"] in ("finished", "diverged"), run["summary"]
        assert resolve_device(run["config"]["device"]).type == "cuda"
