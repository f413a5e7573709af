"""How the dashboard gets to a page: ``launch`` in a notebook cell or a Voila kernel, and the
warm-up a preheated Voila kernel does while it waits for its page."""

from __future__ import annotations

import os
import secrets
import time
from pathlib import Path

import ipywidgets as W
import numpy as np
import plotly.graph_objects as go
import torch
from plotly.subplots import make_subplots

from bpviz.config import RunConfig
from bpviz.data import load_dataset
from bpviz.presets import PRESETS
from bpviz.session import TrainingSession

from .app import Dashboard
from .class_note import ClassNote


def warm_up() -> None:
    """Pay the app's first-use costs now: a short run of the default settings, its local-Hessian
    report and an empty figure. The first ``torch.optim`` optimizer imports ``torch._dynamo``
    (2.4 s here), and the first steps, eigen-solves and plotly figure are slower than later ones;
    a preheated Voila kernel does this while it waits for its page, so the page gets its app sooner."""
    session = TrainingSession(RunConfig(steps=30), loss_every=10, eval_every=10, hessian_share=0.5)
    session.start()
    session.wait(timeout=60)
    for dataset in {cfg.dataset for cfg in PRESETS.values()}:  # digits: its first load imports scikit-learn (1 s)
        load_dataset(RunConfig(dataset=dataset))
    zero = np.zeros(1, np.float32)
    make_subplots(rows=3, cols=2).add_trace(go.Scatter(x=zero, y=zero), row=1, col=1)


def page_folder() -> str:
    """A runs folder name of one page's own: when it opened, and a random part."""
    return time.strftime("page-%Y%m%d-%H%M%S-") + secrets.token_hex(3)


def page_url() -> str:
    """The page's address without its query, as Voila saw the request ("" outside Voila)."""
    host, port, path = (os.environ.get(k, "") for k in ("SERVER_NAME", "SERVER_PORT", "SCRIPT_NAME"))
    return f"http://{host}{':' + port if port else ''}{path}" if host and path else ""


def launch(runs_dir: str | Path | None = None) -> Dashboard:
    """Display the app (in Voila or a JupyterLab cell); settings come from the page's URL query.

    Each page writes its runs to a folder of its own under ``runs_dir`` (or $BPVIZ_RUNS_DIR, else
    ``runs``), so students on one server do not see each other's runs. In a preheated Voila kernel
    (one started and run before any page asked for it) this warms up and then waits for the page's
    request, whose URL query it then reads."""
    from IPython.display import display

    # One compute thread per app kernel: with two, OpenMP's spinning threads slow training by
    # orders of magnitude whenever the browser or another kernel holds a core (measured here).
    torch.set_num_threads(int(os.environ.get("BPVIZ_THREADS", "1")))
    if os.environ.get("VOILA_PREHEAT") == "True":
        from voila.utils import wait_for_request

        warm_up()
        wait_for_request()
    base = Path(runs_dir or os.environ.get("BPVIZ_RUNS_DIR", "runs"))
    app = Dashboard(query=os.environ.get("QUERY_STRING", ""), runs_dir=base / page_folder(), page_url=page_url())
    class_file = os.environ.get("BPVIZ_CLASS_FILE")  # set by deploy/jupyterhub: what the teacher pushes
    if class_file:
        note = ClassNote(class_file, load_preset=lambda name: setattr(app.preset, "value", name))
        display(W.VBox([note.widget, app.widget]))
    else:
        display(app.widget)
    return app
