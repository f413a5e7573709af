"""Drive the dashboard as a user would: a real Voila server and headless Debian Chromium, and probes
that read the page. Used by bench/dashboard.py and by the browser tests (tests/browser/harness.py
imports it), so neither reaches into the other.

Voila runs as ``bin/serve_voila.py`` (Voila, plus plotly's widget code served once for the browser to
cache), a subprocess in its own process group (``start_new_session=True``) from the repository root,
so it reads the repository's ``voila.json``; at the end the whole group gets SIGTERM (Voila then
shuts its kernels down). Readiness is checked on a URL that does not render the notebook: every GET
of ``/`` starts a kernel and executes the notebook.

Chromium is the system binary (``/usr/bin/chromium``, installed by ``bin/setup`` with apt), driven by
Playwright's Python API; ``playwright install`` is never needed.
"""

from __future__ import annotations

import http.client
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "notebooks" / "dashboard.ipynb"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ARTIFACTS = ROOT / "test-artifacts"

# --- JavaScript probes, evaluated in the page ---------------------------------------------------
#: a panel's plotly graph div: every panel of the app is a FigureWidget of its own
PLOT = ".js-plotly-plot"
#: JavaScript expression: every trace in the page, all panels' together
ALL_TRACES = "Array.from(document.querySelectorAll('%s'), gd => gd.data || []).flat()" % PLOT
#: {name: {x: [...], y: [...]}} for the traces whose names are given (all when none are)
TRACES_JS = """(names) => {
  if (!document.querySelector('%s')) return null;
  const out = {};
  for (const t of %s) {
    if (names && names.length && !names.includes(t.name)) continue;
    const arr = (a) => (a && a.length !== undefined) ? Array.from(a, Number) : [];
    out[t.name] = {x: arr(t.x), y: arr(t.y)};
  }
  return out;
}""" % (PLOT, ALL_TRACES)
#: true once the app's controls and its panels are in the page
APP_READY_JS = (
    """() => { const plots = Array.from(document.querySelectorAll('%s'));
  return !!(document.querySelector('.bpviz-start') && document.querySelector('.bpviz-status')
            && plots.length && plots.every(gd => gd.data)); }"""
    % PLOT
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def voila_command(port: int, *extra: str, notebook: Path = NOTEBOOK) -> list[str]:
    return [
        sys.executable,
        str(ROOT / "bin" / "serve_voila.py"),
        str(notebook),
        "--no-browser",
        f"--port={port}",
        "--Voila.ip=127.0.0.1",
        *extra,
    ]


def start_voila(
    port: int, *extra: str, log: Path | None = None, env: dict | None = None, notebook: Path = NOTEBOOK
) -> subprocess.Popen:
    """Voila on 127.0.0.1:port in its own process group, run from the repository root."""
    out = open(log, "wb") if log else subprocess.DEVNULL
    return subprocess.Popen(
        voila_command(port, *extra, notebook=notebook),
        cwd=ROOT,
        env={**os.environ, **(env or {})},
        stdout=out,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def http_get(port: int, path: str, timeout: float = 5.0) -> tuple[int, str]:
    """(status, Location header) of GET path; redirects are not followed."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status, response.getheader("Location") or ""
    finally:
        conn.close()


def wait_ready(port: int, proc: subprocess.Popen, timeout: float = 60.0) -> float:
    """Seconds until Voila answers HTTP. Polls a static-file URL (403 at once); never ``/``,
    which would start a kernel."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if proc.poll() is not None:
            raise RuntimeError(f"voila exited with code {proc.returncode} before answering")
        try:
            http_get(port, "/voila/files/ready-probe", timeout=1.0)
            return time.monotonic() - t0
        except OSError:
            time.sleep(0.1)
    raise TimeoutError(f"voila did not answer on port {port} within {timeout} s")


def stop_voila(proc: subprocess.Popen, timeout: float = 20.0) -> None:
    """SIGTERM to Voila's process group (Voila shuts its kernels down); SIGKILL if it lingers."""
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            pass
    try:  # kernels are in the same group; make sure nothing of ours is left
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait(5)


def log_tail(log: Path, n: int = 60) -> str:
    """The last n lines of a server's log ("" if it cannot be read), for a failing test's report."""
    try:
        return "\n".join(log.read_text(errors="replace").splitlines()[-n:])
    except OSError:
        return ""


def children(pid: int) -> list[int]:
    """Direct child processes of pid (read from /proc)."""
    kids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # the command name is in parentheses and may contain spaces: split after the last ')'
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
            kids.append(int(entry.name))
    return kids


def kernel_pids(voila_pid: int) -> list[int]:
    """The kernels Voila started (ipykernel_launcher children of the voila process)."""
    pids = []
    for pid in children(voila_pid):
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
        except OSError:
            continue
        if b"ipykernel" in cmd:
            pids.append(pid)
    return pids


def rss_mb(pid: int, field: str = "VmRSS") -> float:
    """VmRSS (or VmHWM, the peak) of pid in MB, 0 if it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def launch_browser(playwright, user_data_dir: str | Path, **kwargs):
    """A fresh headless Chromium profile (a persistent context on an empty directory)."""
    if not Path(CHROMIUM).exists():
        raise RuntimeError(f"{CHROMIUM} is missing: run `bash bin/setup` as root (it installs it with apt)")
    return playwright.chromium.launch_persistent_context(
        str(user_data_dir),
        executable_path=CHROMIUM,
        headless=True,
        args=CHROMIUM_ARGS,
        viewport={"width": 1400, "height": 1000},
        **kwargs,
    )


# --- page helpers (Playwright sync API) ------------------------------------------------------------
def open_app(page, url: str, timeout_ms: int = 120_000) -> float:
    """Open the app and wait until its controls and its figure are there; returns the seconds it took.
    A new page means a new kernel that imports torch and executes the notebook (10-20 s here)."""
    t0 = time.monotonic()
    page.goto(url, timeout=timeout_ms)
    page.wait_for_function(APP_READY_JS, timeout=timeout_ms)
    return time.monotonic() - t0


def traces(page, *names: str) -> dict:
    """{name: {"x": [...], "y": [...]}} read from plotly's data in the page."""
    return page.evaluate(TRACES_JS, list(names)) or {}


def wait_points(page, name: str, n: int = 2, after_step: float = -1, timeout_ms: int = 60_000) -> dict:
    """Wait until trace ``name`` has at least n points and its last step is beyond after_step."""
    page.wait_for_function(
        """([name, n, after]) => { const t = %s.find(t => t.name === name);
             return !!(t && t.x && t.x.length >= n && Number(t.x[t.x.length - 1]) > after); }"""
        % ALL_TRACES,
        arg=[name, n, after_step],
        timeout=timeout_ms,
        polling=250,
    )
    return traces(page, name)[name]


def status_text(page) -> str:
    return page.inner_text(".bpviz-status")


def status_lr(page) -> float | None:
    """The lr the training worker uses, as the status line shows it (``... · lr 1.00e-02``)."""
    m = re.search(r"lr\s+([0-9.]+(?:e[+-]?\d+)?)", status_text(page))
    return float(m.group(1)) if m else None


def lr_readout(page) -> float:
    return float(page.inner_text(".bpviz-lr .widget-readout").strip())


def press_lr(page, *keys: str) -> float:
    """Press keys on the step-size slider's handle; returns the value its readout then shows."""
    page.locator(".bpviz-lr .noUi-handle").focus()
    for key in keys:  # to the focused handle (a locator's press would re-resolve it every time)
        # a burst, milliseconds apart: the page sends the first change and holds the rest until the
        # kernel has answered it, which took 20 s and more behind a queue of figure updates
        page.keyboard.press(key)
    return lr_readout(page)
