"""Where the local-Hessian report's zero floor (1e-9 lambda_max) cuts a spectrum, preset by preset.

For every dashboard preset: the report on its probe (``probe_size``) at step 0 and after
``--steps`` SGD steps, and for each block and ``wrt`` with eigenvalues between round-off and the floor
(``below_floor``: its kappa is then a lower bound) how many there are. Prints counts, not times.

    OMP_NUM_THREADS=1 .venv/bin/python bench/zero_floor.py --steps 300
"""

from __future__ import annotations

import argparse

import torch

from bpviz.hessian_report import local_hessian_report, probe_size
from bpviz.presets import PRESETS
from bpviz.train import Trainer


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--steps", type=int, default=300)
    args = ap.parse_args()
    torch.set_num_threads(1)
    for name, cfg in PRESETS.items():
        trainer = Trainer(cfg.replace(device="cpu"))
        for step in (0, args.steps):
            while trainer.step_count < step:
                trainer.step()
            n = probe_size(trainer.model, trainer.x_train, cfg.batch_size)
            report = local_hessian_report(trainer.model, trainer.x_train[:n], max_samples=None)
            cut = [f"{s.wrt} {s.block}: {s.below_floor}" for s in report.stats if s.below_floor]
            print(f"{name:>22}  step {step:>4}  probe {n:>2}  cut by the floor: {', '.join(cut) or '-'}", flush=True)


if __name__ == "__main__":
    main()
