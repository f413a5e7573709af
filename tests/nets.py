"""Small networks the tests build their dense references on."""

from bpviz.config import RunConfig
from bpviz.models import build_model


def two_block_net(arch: str, **cfg):
    """A float64 two-block net for dense references: an MLP on 6 inputs (width 6) or a CNN on
    2x4x4 images (width 3), 3 outputs; returns it and its input shape."""
    shape = (2, 4, 4) if arch == "cnn" else (6,)
    dataset, width = ("digits", 3) if arch == "cnn" else ("spirals", 6)
    config = RunConfig(arch=arch, dataset=dataset, depth=2, width=width, dtype="float64", **cfg)
    return build_model(config, shape, 3), shape
