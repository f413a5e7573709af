"""The dashboard end to end: a real Voila server and headless Chromium, as a user would see it.

Run: .venv/bin/python bench/dashboard.py [--cold] [--presets] [--steps 10000] [--window 10] [--query "depth=3"]

Prints, for one server start and one page:
- time to first plotted loss point: from Voila's start (server answering, page opened, app ready,
  Start clicked, first ``batch loss`` point in plotly's data), and from opening the page.
  By default Voila runs with voila.json, which keeps one preheated kernel (imports done, waiting for
  a page); the page is opened once that kernel is waiting (a user who arrives later), and the
  timings say so. --cold turns preheating off: the page is opened as soon as Voila answers.
  Goal: <= 4 s (issue 13; an earlier goal was 8 s).
- bytes the page received while opening (until the app is ready): HTTP responses (headers and body
  as received, so compressed or cached ones count what crossed the wire) and websocket frames (their
  payloads after permessage-deflate is undone: an upper bound of the wire bytes), with the largest
  frame; at the end the same again for a second page in the same browser profile (a returning user,
  with the browser's cache). plotly's widget code is ~5 MB: inside the widget state it is one
  websocket frame on every open; served over HTTP (bin/serve_voila.py) it is one HTTP response,
  which the second open takes from the cache.
- sustained updates per second reaching the browser: changes of the ``batch loss`` trace's last step
  (goal: >= 10/s) and ``plotly_afterplot`` events of all panels (each panel is a figure of its own),
  counted in the page over --window seconds; the mean time of one panel's redraw
  (``plotly_beforeplot`` to ``plotly_afterplot``) and the share of each second spent redrawing.
- bytes per update after --steps steps: websocket frames received by the page (Playwright's
  ``framereceived``, payload sizes as above) over --window seconds, divided by the loss-trace
  changes the page saw in that time. Goal: <= 64 KB.
- how responsive the page stays while the figure streams: three step-size key presses in a burst,
  the time the presses took (the browser's main thread answering) and the time until the status
  line shows the new step size (read inside the training worker, so it made the round trip).
- peak RSS of the kernel that ran the app (VmHWM of Voila's ipykernel child). Goal: <= 700 MB.

--presets replaces the last four: in the same page, every preset of the menu in turn (the menu is
``bpviz.presets.PRESETS`` in order) is chosen in the preset dropdown, then Start is clicked and, once
the first point is there, Stop. One line per preset: choice -> ready (Start enabled again, the
settings' JSON names the preset and the new run's ``batch loss`` trace is there, still empty) and
Start click -> the new run's first ``batch loss`` point in plotly's data. Goal: <= 2 s each.

On a 2-core machine the browser, Voila and the kernel share the cores, so all of these move with
what else runs. Voila's log: test-artifacts/bench-dashboard-voila.log.
"""

from __future__ import annotations

import argparse
import json
import re
import tempfile
import time
from pathlib import Path

from voila_chromium import (
    ARTIFACTS,
    NOTEBOOK,
    PLOT,
    ROOT,
    free_port,
    kernel_pids,
    launch_browser,
    open_app,
    press_lr,
    rss_mb,
    start_voila,
    status_lr,
    status_text,
    stop_voila,
    wait_points,
    wait_ready,
)

COUNTERS_JS = (
    """() => {
  if (window.__bench) return true;
  const b = window.__bench = {afterplot: 0, changes: 0, lastX: null, drawMs: 0};
  // every panel is a figure of its own: each one's redraws are counted and timed
  for (const gd of document.querySelectorAll('%s')) {
    let start = null;
    // how long plotly takes from the start of a redraw to its end: what bounds the rate in the page
    gd.on('plotly_beforeplot', () => { start = performance.now(); });
    // counted after each redraw (a timer would starve: redraws keep the page's main thread busy)
    gd.on('plotly_afterplot', () => {
      b.afterplot += 1;
      if (start !== null) { b.drawMs += performance.now() - start; start = null; }
      const t = gd.data && gd.data.find(t => t.name === 'batch loss');
      if (!t) return;
      const x = t.x && t.x.length ? Number(t.x[t.x.length - 1]) : null;
      if (x !== b.lastX) { b.changes += 1; b.lastX = x; }
    });
  }
  return true;
}"""
    % PLOT
)
READ_COUNTERS_JS = (
    "() => ({afterplot: window.__bench.afterplot, changes: window.__bench.changes, "
    "drawMs: window.__bench.drawMs, t: performance.now()})"
)
#: the preset menu's entries, "(custom)" left out
PRESET_NAMES_JS = "() => Array.from(document.querySelectorAll('.bpviz-preset select option'), o => o.text).slice(1)"
#: true once the chosen preset is the state: Start enabled, its JSON shown, the new run's traces empty
PRESET_READY_JS = (
    """(name) => { const b = document.querySelector('button.bpviz-start');
  const json = document.querySelector('.bpviz-json textarea');
  const gd = document.querySelector('%s');
  const t = gd && gd.data && gd.data.find(t => t.name === 'batch loss');
  return !!(b && !b.disabled && json && json.value.includes('"name": "' + name + '"')
            && t && (!t.x || t.x.length === 0)); }"""
    % PLOT
)


def status_step(page) -> int:
    m = re.search(r"step (\d+)", status_text(page))
    return int(m.group(1)) if m else 0


def kernel_step(runs_dir: Path) -> int:
    """The last step the training worker wrote to its run's metrics.jsonl (flushed every second);
    runs lie in a folder per page under runs_dir."""
    runs = sorted(runs_dir.rglob("metrics.jsonl"), key=lambda p: p.stat().st_mtime)
    if not runs:
        return -1
    step = -1
    for line in runs[-1].read_text().splitlines():
        try:
            step = max(step, int(json.loads(line).get("step", -1)))
        except ValueError:
            pass
    return step


def cpu_ticks(pid: int) -> int:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return int(fields[11]) + int(fields[12])  # utime + stime
    except OSError:
        return 0


def wait_pool_ready(voila_pid: int, timeout: float = 120.0) -> float:
    """Seconds until the preheated kernel has run the notebook up to wait_for_request(): its process
    exists and has used no CPU for a second. (Voila's "pool is filled" log line comes when the kernel
    has started, before it executed anything.)"""
    t0 = time.monotonic()
    last, quiet_since = None, None
    while time.monotonic() - t0 < timeout:
        pids = kernel_pids(voila_pid)
        ticks = sum(cpu_ticks(p) for p in pids)
        if pids and ticks > 100 and ticks == last:
            if time.monotonic() - quiet_since >= 1.0:
                return time.monotonic() - t0
        else:
            quiet_since = time.monotonic()
        last = ticks
        time.sleep(0.2)
    raise TimeoutError("the preheated kernel did not settle")


class Traffic:
    """What the page receives: websocket frames as (bytes, is a figure update from the kernel), and
    the HTTP requests that finished while ``http_open`` (their sizes are read later: each read is a
    round trip to the browser)."""

    def __init__(self, page) -> None:
        self.frames: list[tuple[int, bool]] = []
        self.requests: list = []
        self.http_open = True
        # Playwright delivers events while we are inside one of its calls: wait with
        # page.wait_for_timeout, never time.sleep, and count frames by index
        page.on("websocket", lambda ws: ws.on("framereceived", self._frame))
        page.on("requestfinished", self._request)

    def _frame(self, payload: str | bytes) -> None:
        data = payload.encode() if isinstance(payload, str) else payload
        head = data[:4096].decode("latin-1")
        self.frames.append((len(data), '"_py2js_update": {' in head or b'"_py2js_update": {' in data[-200:]))

    def _request(self, request) -> None:
        if self.http_open:
            self.requests.append(request)

    def opened(self) -> str:
        """Stop counting HTTP responses (the app is ready) and say what the page received until then:
        response headers and bodies as received (one from the browser's cache: no body bytes) and
        websocket frames."""
        self.http_open = False
        sizes = [r.sizes() for r in self.requests]
        http = sum(max(s["responseHeadersSize"], 0) + max(s["responseBodySize"], 0) for s in sizes)
        frames = [size for size, _ in self.frames]
        return (
            f"{(http + sum(frames)) / 2**20:6.2f} MB: HTTP {http / 2**20:.2f} MB in {len(sizes)} responses, "
            f"websocket {sum(frames) / 2**20:.2f} MB in {len(frames)} frames "
            f"(largest {max(frames, default=0) / 2**20:.2f} MB)"
        )


def measure_streaming(page, args, runs_dir: Path, t_first: float, traffic: Traffic) -> None:
    """Updates per second, bytes per update, key presses while streaming; prints them."""
    page.evaluate(COUNTERS_JS)
    c0 = page.evaluate(READ_COUNTERS_JS)
    page.wait_for_timeout(args.window * 1000)
    c1 = page.evaluate(READ_COUNTERS_JS)
    early_rate = (c1["afterplot"] - c0["afterplot"]) / ((c1["t"] - c0["t"]) / 1000)
    early_changes = (c1["changes"] - c0["changes"]) / ((c1["t"] - c0["t"]) / 1000)
    early_lag = (kernel_step(runs_dir) - status_step(page), time.monotonic() - t_first)

    while status_step(page) < args.steps:
        if "running" not in status_text(page):
            raise RuntimeError(f"the run ended before step {args.steps}: {status_text(page)}")
        page.wait_for_timeout(500)
    step_a = status_step(page)
    c2 = page.evaluate(READ_COUNTERS_JS)
    n_frames = len(traffic.frames)
    page.wait_for_timeout(args.window * 1000)
    c3 = page.evaluate(READ_COUNTERS_JS)
    window = [size for size, _ in traffic.frames[n_frames:]]
    fig_updates = sum(is_fig for _, is_fig in traffic.frames[n_frames:])
    step_b = status_step(page)
    lag_steps, lag_at = kernel_step(runs_dir) - step_b, time.monotonic() - t_first
    late_updates = c3["afterplot"] - c2["afterplot"]
    late_changes = c3["changes"] - c2["changes"]
    late_rate = late_updates / ((c3["t"] - c2["t"]) / 1000)
    t_keys = time.monotonic()
    shown = press_lr(page, "ArrowRight", "ArrowRight", "ArrowRight")
    t_pressed = time.monotonic()
    while abs((status_lr(page) or 0) - shown) > 0.02 * shown and time.monotonic() - t_pressed < 120:
        page.wait_for_timeout(50)
    t_applied = time.monotonic()

    kb = sum(window) / 1024
    print(
        f"  updates/s in the page, first {args.window:.0f} s       {early_rate:6.1f} panel redraws/s, "
        f"{early_changes:.1f} loss-trace changes/s   (goal >= 10/s)"
    )
    print(
        f"  updates/s in the page, after step {step_a:<6d} {late_rate:6.1f} panel redraws/s, "
        f"{late_changes / args.window:.1f} loss-trace changes/s; training advanced {step_b - step_a} steps"
    )
    busy_ms = c3["drawMs"] - c2["drawMs"]
    print(
        f"  one panel's redraw, after step {step_a:<6d}   {busy_ms / max(late_updates, 1):6.0f} ms "
        f"(plotly_beforeplot -> afterplot); redrawing took {busy_ms / args.window:.0f} ms of each second"
    )
    print(
        f"  websocket down after step {step_a:<6d}      {kb / args.window:6.1f} KB/s in {len(window)} frames, "
        f"{fig_updates} figure updates sent by the kernel: {kb / max(fig_updates, 1):.1f} KB per figure update, "
        f"{kb / max(late_changes, 1):.1f} KB per loss-trace change in the page (goal <= 64 KB); "
        f"largest frame {max(window, default=0) / 1024:.1f} KB"
    )
    rate = (step_b - step_a) / args.window
    print(
        f"  page behind the worker                 {early_lag[0]} steps {early_lag[1]:.0f} s after the first point; "
        f"{lag_steps} steps = {lag_steps / max(rate, 1e-9):.1f} s at the end ({lag_at:.0f} s) "
        f"(the run's metrics.jsonl, flushed every second, vs the page's status line)"
    )
    print(
        f"  3 step-size key presses took           {t_pressed - t_keys:6.2f} s; the worker's lr shown "
        f"{t_applied - t_pressed:.2f} s later"
    )


def measure_presets(page) -> None:
    """Every preset of the menu in turn: choose it, Start, first point, Stop; prints one line each."""
    page.locator(".bpviz-stop").click()  # the first run (the bench's Start above) ends here
    page.wait_for_function("() => !document.querySelector('.bpviz-status').innerText.includes('running')")
    print("  preset                 choice -> ready   Start -> first point   (goal <= 2 s each)")
    for name in page.evaluate(PRESET_NAMES_JS):
        t0 = time.monotonic()
        page.locator(".bpviz-preset select").select_option(label=name)
        page.wait_for_function(PRESET_READY_JS, arg=name, timeout=60_000, polling=50)
        t_ready = time.monotonic()
        page.locator(".bpviz-start").click()
        t_click = time.monotonic()
        wait_points(page, "batch loss", n=1, timeout_ms=120_000)
        t_first = time.monotonic()
        page.locator(".bpviz-stop").click()
        page.wait_for_function("() => !document.querySelector('.bpviz-status').innerText.includes('running')")
        print(f"  {name:<22} {t_ready - t0:10.2f} s   {t_first - t_click:14.2f} s")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cold", action="store_true", help="no preheated kernel (--preheat_kernel=False)")
    ap.add_argument("--presets", action="store_true", help="time choosing and starting every preset instead")
    ap.add_argument("--steps", type=int, default=10_000, help="measure bytes per update after this many steps")
    ap.add_argument("--window", type=float, default=10.0, help="seconds to count updates and bytes over")
    ap.add_argument("--query", default="", help="extra URL query for the app, e.g. 'depth=8&batch_norm=true'")
    ap.add_argument("--notebook", default=str(NOTEBOOK))
    args = ap.parse_args()
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(exist_ok=True)
    log = ARTIFACTS / "bench-dashboard-voila.log"
    port = free_port()
    preheat = not args.cold and json.loads((ROOT / "voila.json").read_text()).get("VoilaConfiguration", {}).get(
        "preheat_kernel", False
    )
    extra = ["--preheat_kernel=False"] if args.cold else []
    query = "steps=1000000" + (f"&{args.query}" if args.query else "")
    t_start = time.monotonic()
    runs_dir = Path(tempfile.mkdtemp(prefix="bpviz-bench-runs-"))
    proc = start_voila(
        port,
        *extra,
        log=log,
        notebook=Path(args.notebook),
        env={"BPVIZ_RUNS_DIR": str(runs_dir), "OMP_NUM_THREADS": "1"},
    )
    try:
        t_answer = wait_ready(port, proc)
        t_pool = wait_pool_ready(proc.pid) if preheat else None
        with sync_playwright() as pw, tempfile.TemporaryDirectory() as profile:
            context = launch_browser(pw, profile)
            page = context.new_page()
            traffic = Traffic(page)
            t_goto = time.monotonic()
            open_app(page, f"http://127.0.0.1:{port}/?{query}")
            t_ready = time.monotonic()
            opening = traffic.opened()
            page.locator(".bpviz-start").click()
            t_click = time.monotonic()
            wait_points(page, "batch loss", n=1, timeout_ms=120_000)
            t_first = time.monotonic()
            kernels = kernel_pids(proc.pid)

            print(f"bench/dashboard.py  preheated kernel={preheat}  query=?{query}  notebook={args.notebook}")
            print(f"  voila answering after start            {t_answer:6.1f} s")
            if t_pool is not None:
                print(f"  preheated kernel waiting after         {t_answer + t_pool:6.1f} s (page opened then)")
            print(f"  page open -> app ready                 {t_ready - t_goto:6.1f} s")
            print(f"  bytes received while opening           {opening}")
            print(f"  Start click -> first loss point        {t_first - t_click:6.1f} s")
            print(f"  page open -> first loss point          {t_first - t_goto:6.1f} s   (goal <= 4 s)")
            print(
                f"  voila start -> first loss point        {t_first - t_start:6.1f} s"
                + ("   (includes waiting for the preheated kernel)" if preheat else "")
            )
            if args.presets:
                measure_presets(page)
            else:
                measure_streaming(page, args, runs_dir, t_first, traffic)
            (ARTIFACTS / "bench-dashboard.png").write_bytes(page.screenshot())
            again = context.new_page()  # a returning user: the same browser profile, its cache
            returning = Traffic(again)
            t_again = time.monotonic()
            open_app(again, f"http://127.0.0.1:{port}/?{query}")
            print(f"  page opened again, same browser        {time.monotonic() - t_again:6.1f} s to app ready")
            print(f"  bytes received while opening again     {returning.opened()}")
            for pid in kernels:
                print(f"  kernel pid {pid} peak RSS (VmHWM)        {rss_mb(pid, 'VmHWM'):6.0f} MB   (goal <= 700 MB)")
            context.close()
    finally:
        stop_voila(proc)


if __name__ == "__main__":
    main()
