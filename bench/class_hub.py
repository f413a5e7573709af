"""Starting and using the class hub (deploy/jupyterhub) on loopback, for tests/browser/test_hub.py
and bench/class_load.py: a class folder with generated accounts, free ports, the hub in its own
process group, and logging a browser page in."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from voila_chromium import ROOT, children, free_port, log_tail

HUB_DIR = ROOT / "deploy" / "jupyterhub"
sys.path.insert(0, str(HUB_DIR))

from bpviz_class.accounts import make_class  # noqa: E402 (after the path insert)


@dataclass
class Hub:
    url: str  # http://127.0.0.1:PORT/
    class_dir: Path
    passwords: dict[str, str]
    proc: subprocess.Popen
    log: Path

    def log_tail(self, n: int = 80) -> str:
        return log_tail(self.log, n)


def start_hub(class_dir: Path, students: list[str], log: Path, idle_timeout: int = 900, **env: str) -> Hub:
    """Make the class, start the hub on free loopback ports and wait until it answers."""
    passwords = make_class(class_dir, students)
    port = free_port()
    environment = {
        **os.environ,
        "BPVIZ_CLASS_DIR": str(class_dir),
        "BPVIZ_HUB_PORT": str(port),
        "BPVIZ_HUB_API_PORT": str(free_port()),
        "BPVIZ_PROXY_API_PORT": str(free_port()),
        "BPVIZ_OVERVIEW_PORT": str(free_port()),
        "BPVIZ_IDLE_TIMEOUT": str(idle_timeout),
        "OMP_NUM_THREADS": "1",
        **env,
    }
    proc = subprocess.Popen(
        [str(ROOT / ".venv" / "bin" / "jupyterhub"), "-f", str(HUB_DIR / "jupyterhub_config.py")],
        cwd=class_dir,
        env=environment,
        stdout=open(log, "wb"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    hub = Hub(f"http://127.0.0.1:{port}/", class_dir, passwords, proc, log)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the hub exited ({proc.returncode}):\n{hub.log_tail()}")
        try:
            with urllib.request.urlopen(hub.url + "hub/api/", timeout=2) as reply:
                if reply.status == 200:
                    return hub
        except OSError:
            time.sleep(0.5)
    stop_hub(hub)
    raise RuntimeError(f"the hub did not answer within 60 s:\n{hub.log_tail()}")


def stop_hub(hub: Hub, timeout: float = 30.0) -> None:
    """SIGTERM to the hub, which stops the students' servers, its services and the proxy; then every
    process it started is killed. The servers and their kernels run in sessions of their own, so a
    hub that dies before stopping them (one that hung on its services for 30 s did) leaves them
    running, training on: the next class measured here would share the cores with them."""
    tree = descendants(hub.proc.pid)  # read before the hub goes: its orphans' parent becomes init
    if hub.proc.poll() is None:
        hub.proc.terminate()
        try:
            hub.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            pass
    for pid in [hub.proc.pid, *tree]:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    hub.proc.wait(5)


def descendants(pid: int) -> list[int]:
    out, todo = [], children(pid)
    while todo:
        out.append(todo.pop())
        todo += children(out[-1])
    return out


def log_in(page, hub: Hub, user: str, password: str | None = None, next_url: str = "") -> None:
    """Fill in the hub's login form; afterwards the page is wherever the hub sends the user
    (``next_url``, a path such as ``/user/NAME/voila/render/dashboard.ipynb?steps=100``, or the default)."""
    page.goto(hub.url + "hub/login" + (f"?next={urllib.parse.quote(next_url, safe='')}" if next_url else ""))
    page.fill("input[name=username]", user)
    page.fill("input[name=password]", hub.passwords[user] if password is None else password)
    page.click("input[type=submit], button[type=submit]")
