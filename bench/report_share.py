"""How much of a preset's live run its local-Hessian reports take with the adaptive cadence ("auto"):
each preset as a TrainingSession alone, its own steps, every report timed.

Run: OMP_NUM_THREADS=1 .venv/bin/python bench/report_share.py [PRESET ...]   (default: every preset)
Prints per preset the run's seconds, the reports' count and seconds, their share, and the range of
one report's seconds (docs/results.md cites it for the BN presets).
"""

from __future__ import annotations

import sys
import time

import torch

from bpviz import session as session_module
from bpviz.presets import PRESETS, get_preset
from bpviz.session import TrainingSession


def main(names: list[str]) -> None:
    torch.set_num_threads(1)
    real, spent = TrainingSession._hessian, []

    def timed(self, *args, **kwargs):
        start = time.perf_counter()
        out = real(self, *args, **kwargs)
        spent.append(time.perf_counter() - start)
        return out

    session_module.TrainingSession._hessian = timed
    for name in names or list(PRESETS):
        spent.clear()
        session = TrainingSession(get_preset(name).replace(device="cpu"))
        start = time.perf_counter()
        session.start()
        session.wait()
        total = time.perf_counter() - start
        print(
            f"{name:<22} {session.step:>5} steps in {total:6.1f} s; {len(spent)} reports {sum(spent):6.1f} s "
            f"({sum(spent) / total:4.0%}), each {min(spent):.2f}-{max(spent):.2f} s",
            flush=True,
        )


if __name__ == "__main__":
    main(sys.argv[1:])
