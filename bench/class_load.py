"""How many students one machine serves: N simulated students log in to the class hub, each trains
in their own dashboard and watches it; per N it prints figure updates per second per page, Start →
first point, kernel memory and failures, and checks that every run is on disk and in the overview.

Run: .venv/bin/python bench/class_load.py --students 2 4 6 [--watch 20]

Each student is a light websocket client that speaks the Jupyter kernel protocol as the page does:
it logs in over HTTP, asks for the widgets' state, clicks Start, answers the app's flow-control pings,
ticks its heartbeat, and counts the figure updates it receives (comm messages to plotly's widget
models). It does not draw, so a page's own redraw time (tests/browser, bench/dashboard.py) is not in
these figures; real browsers for some students are not done yet. The hub, its proxy, the servers,
kernels and clients all share this machine.
"""

from __future__ import annotations

import argparse
import asyncio
import http.cookiejar
import json
import re
import struct
import sys
import tempfile
import time
import urllib.parse
import urllib.request
import uuid
from pathlib import Path

from tornado.httpclient import HTTPRequest
from tornado.websocket import websocket_connect

sys.path.insert(0, str(Path(__file__).resolve().parent))
from class_hub import start_hub, stop_hub  # noqa: E402
from voila_chromium import ARTIFACTS, children  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "deploy" / "jupyterhub"))
from bpviz_class.summary import summarise  # noqa: E402

DASHBOARD = "voila/render/dashboard.ipynb?steps=1000000"


def message(msg_type: str, content: dict, session: str) -> str:
    header = {"msg_id": uuid.uuid4().hex, "msg_type": msg_type, "session": session, "username": "", "version": "5.3"}
    return json.dumps(
        {"header": header, "parent_header": {}, "metadata": {}, "content": content, "channel": "shell", "buffers": []}
    )


def decode(frame) -> dict:
    """A kernel message from a text frame or the legacy binary frame (count, offsets, JSON, buffers)."""
    if isinstance(frame, str):
        return json.loads(frame)
    (n,) = struct.unpack("!I", frame[:4])
    offsets = struct.unpack(f"!{n}I", frame[4 : 4 + 4 * n])
    end = offsets[1] if n > 1 else len(frame)
    return json.loads(frame[offsets[0] : end])


class LightStudent:
    """One student without a browser (see the module docstring)."""

    def __init__(self, hub, user: str):
        self.hub, self.user = hub, user
        self.jar = http.cookiejar.CookieJar()
        self.http = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(self.jar))
        self.updates: list[float] = []
        self.clicked = self.first_point = None
        self.error = ""

    def _open(self, path: str, data: dict | None = None) -> tuple[str, str]:
        body = urllib.parse.urlencode(data).encode() if data is not None else None
        with self.http.open(self.hub.url + path.lstrip("/"), data=body, timeout=60) as reply:
            return reply.geturl(), reply.read().decode(errors="replace")

    def log_in(self) -> str:
        """Log in, wait for the server, open the dashboard; returns its HTML."""
        self._open("hub/login")
        xsrf = next(c.value for c in self.jar if c.name == "_xsrf")
        password = self.hub.passwords[self.user]
        self._open("hub/login", {"username": self.user, "password": password, "_xsrf": xsrf})
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            url, html = self._open(f"user/{self.user}/{DASHBOARD}")
            if "kernelId" in html:
                return html
            time.sleep(1)  # the hub's spawn-pending page until the server answers
        raise TimeoutError(f"{self.user}: no dashboard within 180 s")

    async def run(self, watch: float) -> None:
        try:
            html = await asyncio.to_thread(self.log_in)
            kernel = re.search(r'"kernelId":\s*"([0-9a-f-]+)"', html).group(1)
            await self.watch(kernel, watch)
        except Exception as exc:  # reported per student, the others go on
            self.error = f"{type(exc).__name__}: {exc}"

    async def watch(self, kernel: str, seconds: float) -> None:
        url = self.hub.url.replace("http", "ws") + f"user/{self.user}/api/kernels/{kernel}/channels"
        probe = urllib.request.Request(self.hub.url + f"user/{self.user}/")
        self.jar.add_cookie_header(probe)
        ws = await websocket_connect(HTTPRequest(url, headers={"Cookie": probe.get_header("Cookie")}))
        session = uuid.uuid4().hex
        send = lambda t, c: ws.write_message(message(t, c, session))  # noqa: E731
        send("comm_info_request", {"target_name": "jupyter.widget"})
        models: dict[str, dict] = {}
        figures, ping, pong, play, start = set(), None, None, None, None
        end, waiting = time.monotonic() + 300, set()
        while time.monotonic() < end:
            frame = await ws.read_message()
            if frame is None:
                raise ConnectionError("the kernel's websocket closed")
            msg = decode(frame)
            kind, content = msg["header"]["msg_type"], msg.get("content", {})
            if kind == "comm_info_reply":
                for comm in content["comms"]:
                    send("comm_msg", {"comm_id": comm, "data": {"method": "request_state"}})
                waiting = set(content["comms"])
            elif kind == "comm_msg" and content["data"].get("method") == "update":
                comm, state = content["comm_id"], content["data"].get("state", {})
                if comm in waiting:
                    waiting.discard(comm)
                    models[comm] = state
                    if not waiting:
                        break
        for comm, state in models.items():
            name = state.get("_model_name", "")
            if name == "ButtonModel" and "bpviz-start" in state.get("_dom_classes", []):
                start = comm
            elif name == "PlayModel":
                play = comm
            elif name == "DirectionalLinkModel":
                ping, pong = (state[k][0].removeprefix("IPY_MODEL_") for k in ("source", "target"))
            elif any(t.get("name") == "batch loss" for t in state.get("_widget_data", []) or []):
                figures.add(comm)  # the loss panel: the figure that gets every update (the others ≤ 2/s)
        if start is None:
            raise RuntimeError("no Start button among the widgets")
        self.clicked = time.monotonic()
        send("comm_msg", {"comm_id": start, "data": {"method": "custom", "content": {"event": "click"}}})
        stop, beat = self.clicked + seconds, 0
        next_beat = self.clicked
        while time.monotonic() < stop:
            if play and time.monotonic() >= next_beat:
                beat += 1
                send(
                    "comm_msg",
                    {"comm_id": play, "data": {"method": "update", "state": {"value": beat}, "buffer_paths": []}},
                )
                next_beat += 2
            try:
                frame = await asyncio.wait_for(ws.read_message(), timeout=0.5)
            except asyncio.TimeoutError:
                continue
            if frame is None:
                raise ConnectionError("the kernel's websocket closed")
            msg = decode(frame)
            content = msg.get("content", {})
            if msg["header"]["msg_type"] != "comm_msg":
                continue
            comm, data = content["comm_id"], content["data"]
            changes = data.get("state", {}) if data.get("method") == "update" else {}
            # one redraw's data (plotly then resets the trait to null: not counted)
            if comm in figures and any(k.startswith("_py2js") and v for k, v in changes.items()):
                now = time.monotonic()
                self.updates.append(now)
                self.first_point = self.first_point or now
            elif comm == ping and "value" in data.get("state", {}):
                state = {"value": data["state"]["value"]}
                send("comm_msg", {"comm_id": pong, "data": {"method": "update", "state": state, "buffer_paths": []}})
        ws.close()


def kernel_memory(hub_pid: int) -> list[int]:
    """VmHWM (MB) of every ipykernel under the hub."""
    out, todo = [], [hub_pid]
    while todo:
        pid = todo.pop()
        todo += children(pid)
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes()
            if b"ipykernel" in cmd:
                status = Path(f"/proc/{pid}/status").read_text()
                out.append(int(re.search(r"VmHWM:\s+(\d+)", status).group(1)) // 1024)
        except OSError:
            continue
    return out


async def one_class(n: int, watch: float) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        students = [f"s{i:02d}" for i in range(1, n + 1)]
        hub = start_hub(Path(tmp) / "class", students, log=ARTIFACTS / f"class-load-{n}.log")
        try:
            clients = [LightStudent(hub, user) for user in students]
            memory: list[int] = []

            async def sample() -> None:
                while True:
                    memory[:] = [max(a, b) for a, b in zip(memory, kernel_memory(hub.proc.pid))] or kernel_memory(
                        hub.proc.pid
                    )
                    await asyncio.sleep(2)

            sampler = asyncio.create_task(sample())
            await asyncio.gather(*(c.run(watch) for c in clients))
            sampler.cancel()
            await asyncio.sleep(2)  # the last records flushed
            rates, firsts, failures = [], [], []
            for c in clients:
                if c.error or c.first_point is None:
                    failures.append(f"{c.user}: {c.error or 'no figure update'}")
                    continue
                half = [t for t in c.updates if t > c.clicked + watch / 2]  # the second half: steady state
                rates.append(len(half) / (watch / 2))
                firsts.append(c.first_point - c.clicked)
            on_disk = [s for s in students if summarise(s, hub.class_dir / "runs" / s).runs >= 1]
            print(
                f"N={n:2d}  updates/s per page min {min(rates, default=0):5.1f} mean "
                f"{sum(rates) / max(1, len(rates)):5.1f}  Start->first point max {max(firsts, default=0):5.1f} s  "
                f"kernel VmHWM max {max(memory, default=0)} MB  runs on disk {len(on_disk)}/{n}  "
                f"failures {len(failures)}",
                flush=True,
            )
            for line in failures:
                print("   ", line)
        finally:
            stop_hub(hub)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--students", type=int, nargs="+", default=[2, 4])
    ap.add_argument("--watch", type=float, default=20.0, help="seconds each student watches after Start")
    args = ap.parse_args()
    ARTIFACTS.mkdir(exist_ok=True)
    for n in args.students:
        asyncio.run(one_class(n, args.watch))


if __name__ == "__main__":
    main()
