"""Voila plus one route: plotly's widget code (~5 MB) as a file that the browser fetches once and caches.

plotly's FigureWidget carries its JavaScript in the widget's state (anywidget's ``_esm``), so every
page open gets those megabytes again over the kernel's websocket, never cached. This Voila also serves
that one file, ``<base_url>bpviz/plotly/widgetbundle.js?v=<hash of its content>``, with
``Cache-Control: max-age=<a year>, immutable`` (a URL with another ``v`` gets ``no-cache``: the browser
revalidates, a 304 if unchanged). It tells its kernels where, in ``BPVIZ_PLOTLY_BUNDLE`` (kernels
inherit the server's environment), and their figures (``bpviz.widgets.plotly_once``) then carry a few
lines that import the file instead of the file itself. The route matches that one name and nothing
else: every other path still goes to Voila's notebook handler.

Run it as ``voila``: ``.venv/bin/python bin/serve_voila.py notebooks/dashboard.ipynb [voila options]``
(``bin/app``, the browser tests and bench/dashboard.py do). A script, not a module of bpviz: the server
process then never imports torch (``import bpviz`` does, 2.3 s and 250 MB here). Where Voila is a
Jupyter server extension instead (the class hub's student servers), this file is one too, named
``serve_voila`` in ``ServerApp.jpserver_extensions``, and adds the same route to that server.
"""

from __future__ import annotations

import datetime
import importlib.util
import os
import re
from pathlib import Path

from jupyter_server.utils import url_path_join
from tornado.web import StaticFileHandler
from voila.app import Voila

# where plotly's FigureWidget takes its _esm from; found without importing plotly
BUNDLE = Path(importlib.util.find_spec("plotly").submodule_search_locations[0]) / "package_data" / "widgetbundle.js"
FOLDER = "bpviz/plotly"  # the bundle's URL path: <base_url>bpviz/plotly/widgetbundle.js
#: read by bpviz.widgets.plotly_once in the kernels: the bundle's URL relative to Voila's base URL
ROUTE_ENV = "BPVIZ_PLOTLY_BUNDLE"
YEAR = 365 * 24 * 3600


class BundleHandler(StaticFileHandler):
    """plotly's widget bundle, the one file served. Cached for a year when the URL's ``v`` is the hash
    of the bytes served (a URL then always names the same bytes), else revalidated on every use."""

    versioned = False  # this request's URL names the bytes served (set with the cache time)

    def initialize(self) -> None:
        super().initialize(path=str(BUNDLE.parent))

    def get_cache_time(self, path: str, modified: datetime.datetime | None, mime_type: str) -> int:
        self.versioned = self.get_query_argument("v", "") == self.get_content_version(self.absolute_path)
        return YEAR if self.versioned else 0

    def set_extra_headers(self, path: str) -> None:
        self.set_header("Cache-Control", f"max-age={YEAR}, immutable" if self.versioned else "no-cache")


def bundle_route() -> str:
    """What the kernels get in ROUTE_ENV: the bundle's path behind the base URL, with its version."""
    return f"{FOLDER}/{BUNDLE.name}?v={BundleHandler.get_content_version(str(BUNDLE))}"


def route_pattern(base_url: str) -> str:
    return url_path_join(base_url, rf"/{FOLDER}/({re.escape(BUNDLE.name)})")


class PlotlyOnceVoila(Voila):
    """Voila with the bundle's route ahead of its own routes (the last of which takes every path)."""

    def init_handlers(self) -> list:
        return [(route_pattern(self.server_url), BundleHandler), *super().init_handlers()]


def _load_jupyter_server_extension(server_app) -> None:
    """The route in a Jupyter server whose Voila is an extension; its kernels, started later, inherit
    ROUTE_ENV from this process. (tornado puts added routes ahead of the server's last, catch-all one.)"""
    os.environ[ROUTE_ENV] = bundle_route()
    server_app.web_app.add_handlers(".*$", [(route_pattern(server_app.base_url), BundleHandler)])


if __name__ == "__main__":
    # set before Voila starts any kernel (a preheated one starts while Voila initialises)
    os.environ[ROUTE_ENV] = bundle_route()
    PlotlyOnceVoila.launch_instance()
