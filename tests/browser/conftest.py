"""Fixtures for the real-browser tests: one Voila server for the session, a fresh Chromium per test.

The server serves notebooks/dashboard.ipynb from the repository root (so it reads voila.json), with
two changes for tests: idle kernels are culled sooner (every test's page leaves a kernel behind),
and runs are written to a temporary directory. Its log goes to test-artifacts/voila-browser-tests.log;
a failing test leaves a screenshot test-artifacts/FAILED-<test>.png.
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest
from harness import ARTIFACTS, NOTEBOOK, free_port, launch_browser, log_tail, start_voila, stop_voila, wait_ready

# set BPVIZ_TEST_NOTEBOOK to run the same tests against another notebook (e.g. while debugging the app)
TEST_NOTEBOOK = Path(os.environ.get("BPVIZ_TEST_NOTEBOOK", NOTEBOOK))


@dataclass
class Server:
    url: str
    port: int
    proc: subprocess.Popen
    log: Path

    def log_tail(self, n: int = 60) -> str:
        return log_tail(self.log, n)


@pytest.fixture(scope="module")
def voila_server(tmp_path_factory):
    ARTIFACTS.mkdir(exist_ok=True)
    port = free_port()
    log = ARTIFACTS / "voila-browser-tests.log"
    env = {
        "BPVIZ_RUNS_DIR": str(tmp_path_factory.mktemp("runs")),
        # one torch thread per kernel: the kernel shares the cores with the browser and Voila
        "OMP_NUM_THREADS": "1",
    }
    proc = start_voila(
        port,
        "--MappingKernelManager.cull_idle_timeout=30",
        "--MappingKernelManager.cull_interval=10",
        log=log,
        env=env,
        notebook=TEST_NOTEBOOK,
    )
    server = Server(f"http://127.0.0.1:{port}/", port, proc, log)
    try:
        wait_ready(port, proc)
        yield server
    finally:
        stop_voila(proc)


@pytest.fixture(scope="session")
def pw():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        yield p


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    report = yield
    setattr(item, f"report_{report.when}", report)
    return report


@pytest.fixture
def page(pw, voila_server, tmp_path, request):
    """A page in a fresh Chromium profile (a new user); at the end any run is stopped and the
    browser closed. Page errors are collected in ``page.errors``."""
    context = launch_browser(pw, tmp_path / "chromium-profile")
    context.set_default_timeout(30_000)
    page = context.new_page()
    page.errors = []
    page.on("pageerror", lambda exc: page.errors.append(str(exc)))
    yield page
    report = getattr(request.node, "report_call", None)
    if report is not None and report.failed:
        try:
            page.screenshot(path=str(ARTIFACTS / f"FAILED-{request.node.name}.png"))
        except Exception:
            pass
        print(f"--- voila log (tail) ---\n{voila_server.log_tail()}")
    if page.errors:  # uncaught JavaScript errors: reported, not failed on
        print("--- page errors ---\n" + "\n".join(page.errors))
    try:  # leave no training behind for the next test (the heartbeat would stop it after a while);
        # a DOM click: no waiting for the busy page to settle, as a real click would
        page.evaluate("() => { const b = document.querySelector('.bpviz-stop'); if (b) b.click(); }")
        page.wait_for_timeout(300)
    except Exception:
        pass
    context.close()
