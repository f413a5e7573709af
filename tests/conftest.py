import pytest
import torch

from bpviz.config import RunConfig
from bpviz.models import build_model


@pytest.fixture
def make_net():
    """A float64 MLP and a batch whose inputs have a nonzero mean (so BN has something to remove)."""

    def make(n=7, d_in=4, n_out=3, seed=0, **cfg):
        cfg.setdefault("dtype", "float64")
        model = build_model(RunConfig(seed=seed, **cfg), (d_in,), n_out)
        g = torch.Generator().manual_seed(seed + 1)
        x = torch.randn(n, d_in, generator=g, dtype=torch.float64) + 0.5
        y = torch.randint(0, n_out, (n,), generator=g)
        return model, x, y

    return make


def pytest_configure(config):
    # Small tensors gain nothing from two threads, and OpenMP's spinning threads slow down by
    # orders of magnitude when another process (a Voila kernel, a browser) holds a core.
    torch.set_num_threads(1)
