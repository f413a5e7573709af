"""plotly's code served once (no browser): plotly_once's FigureWidget is plotly's own unless
bin/serve_voila.py serves the bundle, then a short import of it behind Voila's base URL; the server's
handler caches the bundle only under the URL that names its bytes."""

import importlib
import importlib.util
from pathlib import Path

import pytest

pytest.importorskip("plotly")
pytest.importorskip("voila")

import bpviz.widgets.plotly_once as plotly_once  # noqa: E402
from tornado.web import Application  # noqa: E402

ENV = ("BPVIZ_PLOTLY_BUNDLE", "VOILA_BASE_URL")
_spec = importlib.util.spec_from_file_location(
    "serve_voila", Path(__file__).resolve().parents[1] / "bin/serve_voila.py"
)
serve_voila = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(serve_voila)


@pytest.fixture
def reload_with(monkeypatch):
    """plotly_once imported again under the given environment (and once more, as it was, afterwards)."""

    def reload(**env: str):
        for name in ENV:
            monkeypatch.delenv(name, raising=False)
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        return importlib.reload(plotly_once)

    yield reload
    monkeypatch.undo()
    importlib.reload(plotly_once)


@pytest.mark.parametrize("env", [{}, {"VOILA_BASE_URL": "/"}], ids=["jupyterlab", "plain voila"])
def test_plotlys_own_bundle_where_no_server_serves_it(reload_with, env):
    module = reload_with(**env)
    assert module.FigureWidget._esm is module.go.FigureWidget._esm
    assert module.FigureWidget()._esm == serve_voila.BUNDLE.read_text(encoding="utf-8")


def test_under_serve_voila_the_widget_imports_the_bundle_behind_the_base_url(reload_with):
    module = reload_with(BPVIZ_PLOTLY_BUNDLE="bpviz/plotly/widgetbundle.js?v=abc", VOILA_BASE_URL="/hub/user/ada/")
    esm = module.FigureWidget()._esm
    assert len(esm) < 1000, esm
    assert 'await import(new URL("/hub/user/ada/bpviz/plotly/widgetbundle.js?v=abc", document.baseURI)' in esm
    assert "export default bundle.default;" in esm
    # the view's answers to every update are not sent, nor the edit counters that pair them
    assert "view._sendTraceDeltas = function () {};" in esm and "view._sendLayoutDelta = function () {};" in esm
    synced = module.FigureWidget().keys
    assert "_last_layout_edit_id" not in synced and "_last_trace_edit_id" not in synced and "_widget_data" in synced


@pytest.fixture
def bundle_server():
    """bin/serve_voila.py's bundle handler on a port of its own, served from a thread with its own
    event loop (a test's loop may already be running in this one), fetched with urllib."""
    import asyncio
    import threading

    from tornado.httpserver import HTTPServer
    from tornado.netutil import bind_sockets

    sockets = bind_sockets(0, "127.0.0.1")
    port = sockets[0].getsockname()[1]
    ready, loop_box = threading.Event(), []

    def serve() -> None:
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        server = HTTPServer(Application([(r"/b/(widgetbundle\.js)", serve_voila.BundleHandler)]))
        server.add_sockets(sockets)
        loop_box.append(loop)
        ready.set()
        loop.run_forever()
        server.stop()
        loop.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    assert ready.wait(10)
    yield f"http://127.0.0.1:{port}"
    loop_box[0].call_soon_threadsafe(loop_box[0].stop)
    thread.join(10)


def fetch(url: str, **headers: str) -> tuple[int, dict, bytes]:
    """Status, headers and body of a GET (a 304 is an answer, not an error)."""
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=30) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as answer:
        return answer.code, dict(answer.headers), b""


def test_cached_for_a_year_only_under_the_url_naming_its_bytes(bundle_server):
    version = serve_voila.BundleHandler.get_content_version(str(serve_voila.BUNDLE))
    code, headers, body = fetch(f"{bundle_server}/b/widgetbundle.js?v={version}")
    assert code == 200 and len(body) == serve_voila.BUNDLE.stat().st_size
    assert headers["Cache-Control"] == "max-age=31536000, immutable"
    for url in ("/b/widgetbundle.js", "/b/widgetbundle.js?v=stale"):
        assert fetch(bundle_server + url)[1]["Cache-Control"] == "no-cache"
    assert fetch(f"{bundle_server}/b/widgetbundle.js", **{"If-None-Match": headers["Etag"]})[0] == 304
