"""The teacher's class overview: a JupyterHub service at /services/class-overview/.

Every student's latest run, live (the page asks for ``api/class`` every 2 s): its settings, state,
step, loss, a loss sparkline and the largest input-Hessian κ of its last report; whether the
student's server is running; and a form that pushes a preset, a link or a message to the class
(``announcement.json``, which each student's dashboard shows). Only users whose token has
``access:services!service=class-overview`` get in: the hub grants that to the teacher alone
(``jupyterhub_config.py``); a student gets JupyterHub's 403 page."""

from __future__ import annotations

import html
import json
import os
import time
from pathlib import Path

from jupyterhub.services.auth import HubOAuthCallbackHandler, HubOAuthenticated
from jupyterhub.utils import url_path_join
from tornado import web
from tornado.httpclient import AsyncHTTPClient, HTTPRequest
from tornado.httpserver import HTTPServer
from tornado.ioloop import IOLoop
from tornado.log import enable_pretty_logging

from bpviz.presets import DESCRIPTIONS, PRESETS

from .accounts import read_accounts
from .summary import class_overview

PAGE = Path(__file__).with_name("overview.html")
MAX_TEXT = 500


def announcement_path(class_dir: Path) -> Path:
    """``<class>/announcement.json``, or $BPVIZ_ANNOUNCEMENT (on Kubernetes: in a folder the students'
    pods mount, since a file mounted alone would not see the atomic replace)."""
    return Path(os.environ.get("BPVIZ_ANNOUNCEMENT", class_dir / "announcement.json"))


def write_announcement(class_dir: Path, preset: str, link: str, message: str) -> dict:
    """Replace the class's announcement atomically; bad input is refused naming the field."""
    if preset and preset not in PRESETS:
        raise ValueError(f"preset {preset!r}: allowed are {', '.join(PRESETS)} or none")
    link = link.strip().lstrip("?")
    if len(link) > MAX_TEXT or len(message) > MAX_TEXT:
        raise ValueError(f"link and message: at most {MAX_TEXT} characters each")
    if any(c in link for c in "<>\"' #/\\"):
        raise ValueError("link: a dashboard link's query (e.g. depth=3&init=orthogonal), without spaces, quotes or '/'")
    if not (preset or link or message.strip()):
        raise ValueError("give a preset, a link or a message")
    path = announcement_path(class_dir)
    old = json.loads(path.read_text()) if path.is_file() else {"id": 0}
    note = {
        "id": int(old.get("id", 0)) + 1,
        "preset": preset,
        "link": link,
        "message": message.strip(),
        "time": time.time(),
    }
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(note))
    os.replace(tmp, path)
    return note


class Base(HubOAuthenticated, web.RequestHandler):
    @property
    def class_dir(self) -> Path:
        return self.settings["class_dir"]


class PageHandler(Base):
    @web.authenticated
    def get(self) -> None:
        self.set_header("Content-Type", "text/html; charset=utf-8")
        presets = json.dumps({name: DESCRIPTIONS.get(name, "") for name in PRESETS})
        self.write(
            PAGE.read_text()
            .replace("__PRESETS__", presets)
            .replace("__TEACHER__", html.escape(self.current_user["name"]))
        )


class ClassHandler(Base):
    """The class as JSON: students (from accounts.json, the teacher left out), their latest runs and
    whether their servers run (from the hub's API, with this service's own token)."""

    @web.authenticated
    async def get(self) -> None:
        accounts = read_accounts(self.class_dir)
        students = sorted(u for u in accounts["users"] if u != accounts["teacher"])
        servers = await self.servers()
        rows = []
        for run in class_overview(self.class_dir, students):
            row = run.to_json()
            row["server"] = servers.get(run.user, "unknown")
            if row["state"] in ("running", "paused") and row["server"] == "stopped":
                row["state"] = "interrupted"  # its kernel went with the server; the run so far is on disk
            rows.append(row)
        note_path = announcement_path(self.class_dir)
        note = json.loads(note_path.read_text()) if note_path.is_file() else None
        self.set_header("Cache-Control", "no-store")
        self.write({"students": rows, "announcement": note, "time": time.time()})

    async def servers(self) -> dict[str, str]:
        """user -> "running", "starting", "stopping" or "stopped" ("culled or never started")."""
        url = url_path_join(os.environ["JUPYTERHUB_API_URL"], "users")
        headers = {"Authorization": f"token {os.environ['JUPYTERHUB_API_TOKEN']}"}
        try:
            reply = await AsyncHTTPClient().fetch(HTTPRequest(url, headers=headers, request_timeout=5))
        except Exception:  # the overview still shows the runs on disk
            return {}
        out = {}
        for user in json.loads(reply.body):
            server = (user.get("servers") or {}).get("")
            out[user["name"]] = (
                "stopped"
                if not server
                else ("running" if server.get("ready") else (server.get("pending") or "starting"))
            )
        return out


class AnnounceHandler(Base):
    @web.authenticated
    def post(self) -> None:
        # JSON only: a cross-site form cannot send it without a CORS preflight, which this refuses
        if self.request.headers.get("Content-Type", "").split(";")[0] != "application/json":
            raise web.HTTPError(415, "send application/json")
        try:
            body = json.loads(self.request.body)
            note = write_announcement(
                self.class_dir, str(body.get("preset", "")), str(body.get("link", "")), str(body.get("message", ""))
            )
        except ValueError as exc:
            self.set_status(400)
            self.write({"error": str(exc)})
            return
        self.write(note)


def make_app(class_dir: Path, prefix: str) -> web.Application:
    return web.Application(
        [
            (prefix, PageHandler),
            (url_path_join(prefix, "api/class"), ClassHandler),
            (url_path_join(prefix, "api/announce"), AnnounceHandler),
            (url_path_join(prefix, "oauth_callback"), HubOAuthCallbackHandler),
        ],
        class_dir=class_dir,
        cookie_secret=os.urandom(32),
    )


def main() -> None:
    enable_pretty_logging()  # into the hub's log, as the hub's own lines
    prefix = os.environ["JUPYTERHUB_SERVICE_PREFIX"]
    url = os.environ["JUPYTERHUB_SERVICE_URL"]
    port = int(url.rsplit(":", 1)[1].split("/")[0])
    server = HTTPServer(make_app(Path(os.environ["BPVIZ_CLASS_DIR"]), prefix))
    # loopback on one machine; in the hub's pod on Kubernetes the proxy's pod must reach it (values.yaml)
    server.listen(port, os.environ.get("BPVIZ_OVERVIEW_BIND", "127.0.0.1"))
    IOLoop.current().start()


if __name__ == "__main__":
    main()
