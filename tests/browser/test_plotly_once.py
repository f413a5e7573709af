"""plotly's widget code (~5 MB) reaches a page over HTTP, once, and then comes from the browser's cache,
instead of inside every page's widget state: bin/serve_voila.py serves it, and the app's figure
(bpviz.widgets.plotly_once) imports it from there, behind Voila's base URL too."""

from __future__ import annotations

import http.client
import importlib.util
from pathlib import Path

import pytest
from harness import (
    ARTIFACTS,
    free_port,
    http_get,
    open_app,
    start_voila,
    stop_voila,
    trace_names,
    wait_points,
    wait_ready,
)

BUNDLE_BYTES = (
    (Path(importlib.util.find_spec("plotly").submodule_search_locations[0]) / "package_data" / "widgetbundle.js")
    .stat()
    .st_size
)
ROUTE = "bpviz/plotly/widgetbundle.js"
#: the bundle's Resource Timing entry: transferSize is 0 when it came from the browser's cache
TIMING_JS = """(route) => performance.getEntriesByType('resource').filter(e => e.name.includes(route))
    .map(e => ({url: e.name, transfer: e.transferSize, size: e.decodedBodySize}))"""


class Traffic:
    """The websocket bytes a page receives (payloads as delivered) and the bundle's HTTP responses."""

    def __init__(self, page) -> None:
        self.ws_bytes = 0
        self.bundle: list = []
        page.on("websocket", lambda ws: ws.on("framereceived", self._frame))
        page.on("response", self._response)

    def _response(self, response) -> None:
        if ROUTE in response.url:
            self.bundle.append(response)

    def _frame(self, payload: str | bytes) -> None:
        self.ws_bytes += len(payload.encode() if isinstance(payload, str) else payload)


def test_the_bundle_comes_over_http_once_then_from_the_cache(page, voila_server):
    first = Traffic(page)
    open_app(page, voila_server.url)
    assert trace_names(page), "the figure did not render"
    # the widget state carries a few lines instead of the bundle (the app's state alone is ~70 KB)
    assert first.ws_bytes < min(1.5e6, BUNDLE_BYTES / 3), first.ws_bytes
    (response,) = first.bundle
    assert response.status == 200 and "?v=" in response.url
    assert response.headers["cache-control"] == "max-age=31536000, immutable"
    (timing,) = page.evaluate(TIMING_JS, ROUTE)
    assert timing["transfer"] > 0 and timing["size"] == BUNDLE_BYTES, timing

    again = page.context.new_page()  # the same browser profile: a returning user
    second = Traffic(again)
    open_app(again, voila_server.url)
    assert trace_names(again), "the figure did not render from the cached bundle"
    assert second.ws_bytes < min(1.5e6, BUNDLE_BYTES / 3), second.ws_bytes
    (timing,) = again.evaluate(TIMING_JS, ROUTE)
    assert timing["transfer"] == 0 and timing["size"] == BUNDLE_BYTES, timing  # not a byte from the server
    again.evaluate("() => document.querySelector('.bpviz-stop')?.click()")
    again.close()


def test_the_panels_stream_without_answering_every_update(page, voila_server):
    """plotly's view would answer each update with its whole figure's defaults (bpviz.widgets.plotly_once):
    under the shim the page sends none of those while every panel streams."""
    sent: list[str] = []
    page.on(
        "websocket",
        lambda ws: ws.on("framesent", lambda p: sent.append(p if isinstance(p, str) else p.decode("latin-1"))),
    )
    open_app(page, voila_server.url + "?steps=200000&depth=3")
    page.locator(".bpviz-start").click(force=True)
    first = wait_points(page, "batch loss", n=2)
    wait_points(page, "grad norm · block 1", n=2)
    later = wait_points(page, "batch loss", n=len(first["x"]) + 5)
    page.evaluate("() => document.querySelector('.bpviz-stop')?.click()")
    assert len(later["x"]) > len(first["x"])
    answers = [m for m in sent if "_js2py_traceDeltas" in m or "_js2py_layoutDelta" in m]
    assert sent and answers == [], answers[:2]


def test_only_the_bundle_is_served(voila_server):
    """Paths next to the bundle's go to Voila's notebook handler, which redirects them to
    /voila/files/, which serves nothing; the bundle asked for without its version is not cached."""
    port = voila_server.port
    for path in (
        "/bpviz/plotly/plotly.min.js",
        "/bpviz/plotly/",
        "/bpviz/plotly/datasets/iris.csv.gz",
        "/bpviz/plotly/../__init__.py",
        "/bpviz/plotly/%2e%2e/__init__.py",
        "/bpviz/plotly/widgetbundle.js/../../README.md",
        "/bpviz/plotly/widgetbundle.js%2f..%2f..%2fREADME.md",
    ):
        status, location = http_get(port, path)
        if status in (301, 302):
            assert location.startswith("/voila/files/"), (path, location)
            status, location = http_get(port, location)
        assert status in (403, 404), (path, status)
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", "/" + ROUTE)
        response = conn.getresponse()
        assert response.status == 200 and len(response.read()) == BUNDLE_BYTES
        assert response.getheader("Cache-Control") == "no-cache"
    finally:
        conn.close()


@pytest.fixture(scope="module")
def prefixed_server(tmp_path_factory):
    """Voila behind a JupyterHub-style prefix (--Voila.base_url), no preheated kernel."""
    port, prefix = free_port(), "/hub/user/ada/"
    proc = start_voila(
        port,
        f"--Voila.base_url={prefix}",
        "--preheat_kernel=False",
        log=ARTIFACTS / "voila-browser-tests-prefixed.log",
        env={"BPVIZ_RUNS_DIR": str(tmp_path_factory.mktemp("runs")), "OMP_NUM_THREADS": "1"},
    )
    try:
        wait_ready(port, proc)
        yield f"http://127.0.0.1:{port}{prefix}"
    finally:
        stop_voila(proc)


def test_the_bundle_url_is_behind_the_base_url(page, prefixed_server):
    traffic = Traffic(page)
    open_app(page, prefixed_server)
    assert trace_names(page), "the figure did not render"
    (response,) = traffic.bundle
    assert response.status == 200 and response.url.startswith(prefixed_server + ROUTE + "?v="), response.url
    assert traffic.ws_bytes < min(1.5e6, BUNDLE_BYTES / 3), traffic.ws_bytes
