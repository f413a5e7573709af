"""The note above the figure: on which samples the local Hessians are computed, and which κ are
only lower bounds and why (the current run's, by block; an earlier run's mean κ)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from bpviz.hessian_report import ZERO_RTOL

if TYPE_CHECKING:
    from bpviz.session import TrainingSession

    from .overlays import Overlays

_FLOOR = f"{ZERO_RTOL:.0e}".replace("e-0", "e-")  # "1e-9"
#: why a report's κ is only a lower bound, as the note above the figure says it
WHY_BOUND = {
    "lanczos": "the exact spectrum is too large to refresh live; Krylov bounds, certified, and their spectra "
    "are estimates",
    "floor": f"the spectrum goes on below {_FLOOR} λmax, where the report counts eigenvalues as zero",
    "": "the report could not give the exact value",  # no report seen says why
}


def note_why(report: dict | None, why: dict[str, str]) -> None:
    """Add to ``why`` (bound series -> a WHY_BOUND key) the reason of each of a report's bounds."""
    for s in report["stats"] if report else ():
        reason = "lanczos" if s["method"] != "exact" else "floor" if s.get("below_floor") else None
        if reason:
            why.setdefault(f"cond_lower_bound/{s['wrt']}/{s['block']}", reason)


def hessian_note(session: TrainingSession, bounded: set[str], why: dict[str, str], overlays: Overlays | None) -> str:
    """The note's text: the probe, then the bound series grouped by reason and ``wrt``."""
    n, batch = session.probe_samples, session.cfg.batch_size
    bn = " (batch norm's statistics over these)" if session.cfg.batch_norm else ""
    same = "the training batch size" if n == batch else f"training batches have {batch}"
    text = f"Local Hessians on the first {n} training samples{bn}; {same}."
    if bounded:
        groups: dict[tuple[str, str], list[int]] = {}
        for key in sorted(bounded, key=lambda k: int(k.rsplit("/", 1)[1])):
            _, wrt, block = key.split("/")
            groups.setdefault((why.get(key, ""), wrt), []).append(int(block))
        parts = [
            f"{wrt} κ of block{'s' if len(blocks) > 1 else ''} {', '.join(map(str, blocks))}: {WHY_BOUND[reason]}"
            for (reason, wrt), blocks in sorted(groups.items(), key=lambda g: (list(WHY_BOUND).index(g[0][0]), g[0][1]))
        ]
        text += f" △ κ ≥: lower bounds ({'; '.join(parts)})."
    else:
        text += " Every κ of this run is exact."
    if overlays and any(o.label in overlays.shown and any(b.any() for b in o.bounds.values()) for o in overlays.items):
        text += " △ on a grey line: an earlier run's mean κ, a lower bound where one of its blocks' κ was."
    return text
