"""Each student's single-user server: the bpviz dashboard in Voila and nothing else.

The hub starts ``jupyterhub-singleuser`` with JUPYTER_CONFIG_DIR pointing here. JupyterHub checks
every request against the student's own login, so nobody else reaches this server; this file makes
the server itself offer no more than the dashboard: no JupyterLab, no terminals, and kernels that
take only widget messages (as standalone Voila does), so the page cannot run code of its own."""

import sys
from pathlib import Path

c = get_config()  # noqa: F821 (traitlets' config loader provides it)

# bin/serve_voila.py as an extension: plotly's ~5 MB widget code served once over HTTP, cached by the
# browser, instead of inside every page's widget state (the repository's bin/, or the image's copy)
sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "bin"))
c.ServerApp.jpserver_extensions = {
    "voila": True,
    "serve_voila": True,
    "jupyterlab": False,
    "notebook": False,
    "jupyter_lsp": False,
    "jupyter_server_terminals": False,
    "notebook_shim": False,
}
c.ServerApp.terminals_enabled = False
# the trial hub runs every server as its own user, root on our CI machines (a real deployment does not)
c.ServerApp.allow_root = True
# the messages a Voila page sends: widget comms and the kernel's info; no execute_request
c.MappingKernelManager.allowed_message_types = [
    "comm_open",
    "comm_close",
    "comm_msg",
    "comm_info_request",
    "kernel_info_request",
    "shutdown_request",
]
# a closed tab's kernel goes 2 minutes after it went idle (the dashboard's heartbeat stops a run nobody watches)
c.MappingKernelManager.cull_idle_timeout = 120
c.MappingKernelManager.cull_interval = 30
c.MappingKernelManager.cull_connected = False
c.MappingKernelManager.cull_busy = False
c.VoilaConfiguration.strip_sources = True
c.VoilaConfiguration.show_tracebacks = False
c.VoilaConfiguration.file_allowlist = []
c.VoilaConfiguration.file_denylist = [".*"]
c.ContentsManager.allow_hidden = False
