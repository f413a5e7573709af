"""How many students one machine serves: N simulated students log in to the class hub, each trains
in their own dashboard and watches it; per N it prints figure updates per second per page, Start →
first point, kernel memory and failures, and checks that every run is on disk and in the overview.

Run: .venv/bin/python bench/class_load.py --students 2 4 8 [--browsers 2] [--watch 20] [--preset NAME]

Student i trains preset i of bpviz.presets.PRESETS (in turn; or every student --preset NAME; steps
raised so the run outlasts the watch), from a link that opens the dashboard with it. The first
--browsers students use real headless Chromium (bench/class_browser.py); the rest are light
websocket clients that speak the Jupyter kernel protocol as the page does: log in over HTTP, ask for
the widgets' state, click Start, answer the app's flow-control pings, tick the heartbeat, and count
the figure updates they receive (comm messages to plotly's widget models) without drawing them. Per
kind it prints: log in → server up → ready (from the login form's submit, the server's spawn
included, to the app's widgets there), Start → first loss point, loss-panel updates per second over
the second half of the watch; then kernel memory, failures, and each student's line (preset,
updates/s, training steps/s). The hub, its proxy, the servers, kernels, browsers and clients all
share this machine, so a browser's drawing competes with the students' kernels here, as it would not
on the students' own laptops.
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

from playwright.async_api import async_playwright
from tornado.httpclient import HTTPRequest
from tornado.websocket import websocket_connect

sys.path.insert(0, str(Path(__file__).resolve().parent))
from class_browser import BrowserStudent  # noqa: E402
from class_hub import start_hub, stop_hub  # noqa: E402
from voila_chromium import ARTIFACTS, CHROMIUM, CHROMIUM_ARGS, children  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "deploy" / "jupyterhub"))
from bpviz_class.summary import class_overview, summarise  # noqa: E402

from bpviz.presets import PRESETS  # noqa: E402


def preset_of(i: int, preset: str | None) -> str:
    """Student i's preset: the one given, else preset i of the menu in turn."""
    return preset or list(PRESETS)[i % len(PRESETS)]


def dashboard_link(name: str) -> str:
    """The dashboard with a preset, as a teacher's link gives it."""
    return "voila/render/dashboard.ipynb?" + PRESETS[name].replace(steps=1_000_000).to_query()


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
    """One student without a browser (see the module docstring); fields as BrowserStudent's."""

    kind = "light"

    def __init__(self, hub, user: str, dashboard: str):
        self.hub, self.user, self.dashboard = hub, user, dashboard
        self.jar = http.cookiejar.CookieJar()
        self.http = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(self.jar))
        self.updates: list[float] = []
        self.ready = self.spawned = self.clicked = self.first_point = self.rate = None
        self.error = ""

    def _open(self, path: str, data: dict | None = None) -> tuple[str, str]:
        body = urllib.parse.urlencode(data).encode() if data is not None else None
        with self.http.open(self.hub.url + path.lstrip("/"), data=body, timeout=60) as reply:
            return reply.geturl(), reply.read().decode(errors="replace")

    def log_in(self, t_submit: float) -> str:
        """Log in, wait for the server, open the dashboard; returns its HTML."""
        password = self.hub.passwords[self.user]
        self._open("hub/login", {"username": self.user, "password": password, "_xsrf": self._xsrf})
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            asked = time.monotonic()
            url, html = self._open(f"user/{self.user}/{self.dashboard}")
            if "kernelId" in html:
                self.spawned = asked - t_submit  # the request that reached the running server
                return html
            time.sleep(1)  # the hub's spawn-pending page until the server answers
        raise TimeoutError(f"{self.user}: no dashboard within 180 s")

    async def run(self, watch: float) -> None:
        try:
            await asyncio.to_thread(self._open, "hub/login")  # the login form, and its XSRF cookie
            self._xsrf = next(c.value for c in self.jar if c.name == "_xsrf")
            t_submit = time.monotonic()
            html = await asyncio.to_thread(self.log_in, t_submit)
            kernel = re.search(r'"kernelId":\s*"([0-9a-f-]+)"', html).group(1)
            await self.watch(kernel, watch, t_submit)
        except Exception as exc:  # reported per student, the others go on
            self.error = f"{type(exc).__name__}: {exc}"

    async def watch(self, kernel: str, seconds: float, t_submit: float) -> None:
        url = self.hub.url.replace("http", "ws") + f"user/{self.user}/api/kernels/{kernel}/channels"
        probe = urllib.request.Request(self.hub.url + f"user/{self.user}/")
        self.jar.add_cookie_header(probe)
        # a browser waits as long as it takes; 20 s (tornado's default) failed 3 of 12 students here
        request = HTTPRequest(url, headers={"Cookie": probe.get_header("Cookie")}, connect_timeout=180)
        ws = await websocket_connect(request)
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
        self.ready = time.monotonic() - t_submit
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
        half = [t for t in self.updates if t > self.clicked + seconds / 2]  # the second half: steady state
        self.rate = len(half) / (seconds / 2)


def kernel_memory(hub_pid: int) -> dict[int, int]:
    """{pid: VmHWM in MB} of every ipykernel under the hub."""
    out, todo = {}, [hub_pid]
    while todo:
        pid = todo.pop()
        todo += children(pid)
        try:
            if b"ipykernel" in Path(f"/proc/{pid}/cmdline").read_bytes():
                status = Path(f"/proc/{pid}/status").read_text()
                out[pid] = int(re.search(r"VmHWM:\s+(\d+)", status).group(1)) // 1024
        except OSError:
            continue
    return out


def report(kind: str, clients: list) -> str:
    done = [c for c in clients if c.kind == kind and not c.error and c.first_point is not None]
    if not done:
        return ""
    rates = [c.rate for c in done]
    return (
        f"  {kind:7s} {len(done):2d}: log in -> server up max {max(c.spawned for c in done):5.1f} s "
        f"-> ready max {max(c.ready for c in done):5.1f} s, "
        f"Start -> first point max {max(c.first_point - c.clicked for c in done):4.1f} s, "
        f"updates/s per page min {min(rates):5.1f} mean {sum(rates) / len(rates):5.1f}"
    )


async def one_class(n: int, n_browsers: int, watch: float, preset: str | None) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        students = [f"s{i:02d}" for i in range(1, n + 1)]
        hub = start_hub(Path(tmp) / "class", students, log=ARTIFACTS / f"class-load-{n}.log")
        try:
            async with async_playwright() as pw:
                browser = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
                clients = [
                    BrowserStudent(hub, user, dashboard_link(preset_of(i, preset)), browser)
                    if i < n_browsers
                    else LightStudent(hub, user, dashboard_link(preset_of(i, preset)))
                    for i, user in enumerate(students)
                ]
                memory: dict[int, int] = {}

                async def sample() -> None:
                    while True:
                        memory.update(kernel_memory(hub.proc.pid))
                        await asyncio.sleep(2)

                sampler = asyncio.create_task(sample())
                await asyncio.gather(*(c.run(watch) for c in clients))
                sampler.cancel()
                await browser.close()
            await asyncio.sleep(2)  # the last records flushed
            failures = [
                f"{c.user} ({c.kind}): {c.error or 'no figure update'}" for c in clients if c.error or not c.rate
            ]
            started = [c for c in clients if c.clicked is not None]
            now = time.monotonic()
            runs = {c.user: summarise(c.user, hub.class_dir / "runs" / c.user) for c in started}
            on_disk = [c.user for c in started if runs[c.user].runs >= 1]
            # training steps per second per student, from what each run wrote (its worker keeps
            # training until the page's heartbeat has been silent for a minute)
            steps = [runs[c.user].step / (now - c.clicked) for c in started] or [0.0]
            shown = {s.user for s in class_overview(hub.class_dir, students) if s.step > 0}
            print(
                f"N={n:2d} ({n_browsers} in browsers)  kernel VmHWM max {max(memory.values(), default=0)} MB  "
                f"started runs on disk {len(on_disk)}/{len(started)}, in the overview "
                f"{len(shown & {c.user for c in started})}/{len(started)}  failures {len(failures)}  "
                f"training steps/s per student min {min(steps):.0f} mean {sum(steps) / len(steps):.0f}",
                flush=True,
            )
            for line in [report("browser", clients), report("light", clients), *failures]:
                if line:
                    print("   ", line, flush=True)
            for i, c in enumerate(clients):  # each student: what their preset gave them
                if c in started and c.rate is not None:
                    print(
                        f"      {c.user} {c.kind:7s} {preset_of(i, preset):22s} updates/s {c.rate:5.1f}  "
                        f"steps/s {runs[c.user].step / (now - c.clicked):6.0f}  log in -> ready {c.ready:5.1f} s",
                        flush=True,
                    )
        finally:
            stop_hub(hub)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--students", type=int, nargs="+", default=[2, 4])
    ap.add_argument("--browsers", type=int, default=2, help="how many of the students use headless Chromium")
    ap.add_argument("--watch", type=float, default=20.0, help="seconds each student watches after Start")
    ap.add_argument("--preset", choices=list(PRESETS), help="every student's preset (default: the menu's in turn)")
    args = ap.parse_args()
    ARTIFACTS.mkdir(exist_ok=True)
    for n in args.students:
        asyncio.run(one_class(n, min(args.browsers, n), args.watch, args.preset))


if __name__ == "__main__":
    main()
