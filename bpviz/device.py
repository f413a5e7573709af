"""Where a run computes: ``device="auto"`` means CUDA when present, else the CPU."""

from __future__ import annotations

from collections.abc import Iterable

import torch


def resolve_device(name: str) -> torch.device:
    """The torch device for a config's ``device`` field, refusing a CUDA device that is absent."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device: {name!r} was asked for but CUDA is not available here; use 'auto' or 'cpu'")
    return device


def torch_dtype(name: str) -> torch.dtype:
    return {"float32": torch.float32, "float64": torch.float64}[name]


def read_numbers(values: Iterable[torch.Tensor | float], device: torch.device) -> list[float]:
    """Scalars (0-d tensors or numbers) as Python floats, read from ``device`` in one sync: on a GPU
    the host then waits for the queued work once, not once per number. Exact: float32 -> float64.
    On the CPU there is nothing to wait for, and ``float`` of each is quicker than stacking them."""
    if device.type == "cpu":
        return [float(v) for v in values]
    return torch.stack([torch.as_tensor(v, dtype=torch.float64, device=device).reshape(()) for v in values]).tolist()
