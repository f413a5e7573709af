"""plotly's FigureWidget whose JavaScript (~5 MB) the browser fetches once over HTTP and caches,
instead of getting it inside every page's widget state.

plotly gives its widget's code to anywidget as ``_esm``: the whole bundle, part of the state the kernel
sends each page over the websocket, megabytes per page open. When the Voila server serves that bundle
itself (``bin/serve_voila.py``, which says where in ``BPVIZ_PLOTLY_BUNDLE``, inherited by its kernels),
``_esm`` here is a two-line module that imports it from there. Anywhere else (JupyterLab, a plain
``voila``) that variable is unset and the widget is plotly's own, bundle included.
"""

from __future__ import annotations

import json
import os

import plotly.graph_objects as go
from traitlets import Integer

#: set by bin/serve_voila.py: the bundle's URL relative to Voila's base URL (with its ?v= version)
ROUTE_ENV = "BPVIZ_PLOTLY_BUNDLE"

# anywidget imports an _esm that is source code from a blob: URL, against which a relative URL means
# nothing; the bundle's path is resolved against the page's address. Only the default export is used.
# plotly's view answers every update with the differences between its whole figure, defaults filled in,
# and the kernel's copy (a deep merge and diff of every trace), which the kernel then echoes back to
# the page. They fill plotly.py's defaults and its on_edits_completed callbacks, which bpviz never
# reads; on a page that streams six panels they were most of the page's work, so they are not sent.
SHIM = """const bundle = await import(new URL(%s, document.baseURI).href);
const view = bundle.FigureView && bundle.FigureView.prototype;
if (view && view._sendTraceDeltas && view._sendLayoutDelta) {
  view._sendTraceDeltas = function () {};
  view._sendLayoutDelta = function () {};
}
export default bundle.default;
"""


def bundle_url() -> str | None:
    """The bundle's URL path (behind Voila's base URL, e.g. a JupyterHub prefix) when the Voila
    server serves it, else None."""
    route, base = os.environ.get(ROUTE_ENV), os.environ.get("VOILA_BASE_URL")
    if not route or base is None:
        return None
    return base.rstrip("/") + "/" + route.lstrip("/")


_URL = bundle_url()


class FigureWidget(go.FigureWidget):
    """``go.FigureWidget``; its page imports plotly's code from the server when the server serves it."""

    if _URL is not None:
        _esm = SHIM % json.dumps(_URL)
        # the edit counters only pair the answers the shim no longer sends with their edits: kept in
        # the kernel, not sent to the page (two messages fewer per update)
        _last_layout_edit_id = Integer(0)
        _last_trace_edit_id = Integer(0)
