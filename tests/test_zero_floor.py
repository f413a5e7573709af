"""The report's zero floor (1e-9 lambda_max) and what lies under it: eigenvalues above round-off that
it counts as zeros are counted in ``below_floor``, so a kappa the floor cut off says so."""

import numpy as np
import torch

from bpviz.cli import format_report
from bpviz.config import RunConfig
from bpviz.hessian_report import ZERO_RTOL, local_hessian_report
from bpviz.local_hessian import dense_reference_spectrum
from bpviz.models import build_model


def _linear_net_with_a_thin_input_direction(scale: float):
    """One linear block on 16 samples of 5 features, the last scaled by ``scale``: its weight Hessian
    I (x) X^T X has, per output unit, one eigenvalue ~scale^2 of the others."""
    model = build_model(RunConfig(depth=1, width=3, activation="linear", dtype="float64"), (5,), 2)
    x = torch.randn(16, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    x[:, -1] *= scale
    return model, x


def test_eigenvalues_between_round_off_and_the_floor_are_counted():
    model, x = _linear_net_with_a_thin_input_direction(3e-6)  # ~1e-11 lambda_max: above float64 round-off
    stats = local_hessian_report(model, x, max_samples=None).get(0, "weight")
    dense = dense_reference_spectrum(model, x, 0, "weight").detach().numpy()
    lmax = dense.max()
    under = dense[(dense > 1e-13 * lmax) & (dense <= ZERO_RTOL * lmax)]
    assert len(under) == 3  # one per output unit
    assert stats.below_floor == 3 and stats.rank == 3 * 4
    above = dense[dense > ZERO_RTOL * lmax]
    assert np.isclose(stats.condition_number, above.max() / above.min(), rtol=1e-9)
    assert stats.condition_number < lmax / under.min() / 1e4  # what kappa would be without the floor
    table = format_report(local_hessian_report(model, x, max_samples=None))
    assert "<floor: eigenvalues above round-off counted as zero (under 1e-09 lambda_max)" in table
    row = next(line for line in table.splitlines() if line.split()[:2] == ["0", "weight"])
    assert row.split()[-1] == "3"


def test_round_off_zeros_are_not_counted():
    model, x = _linear_net_with_a_thin_input_direction(0.0)  # exact zeros: nothing under the floor
    report = local_hessian_report(model, x, max_samples=None)
    assert report.get(0, "weight").below_floor == 0 and report.get(0, "weight").rank == 3 * 4
    assert "<floor:" not in format_report(report)
