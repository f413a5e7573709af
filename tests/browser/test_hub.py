"""The class on JupyterHub (deploy/jupyterhub), for real: the hub and its proxy on loopback, two
students who log in and train in their own dashboards, the teacher's live overview, and what a
student must not reach. Screenshots: test-artifacts/hub-*.png."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest
from harness import ARTIFACTS, launch_browser, screenshot, wait_points
from playwright.sync_api import expect

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
from class_hub import log_in, start_hub, stop_hub  # noqa: E402 (after the path insert)
from voila_chromium import APP_READY_JS  # noqa: E402

STUDENTS = ["alice", "bob"]


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    ARTIFACTS.mkdir(exist_ok=True)
    hub = start_hub(tmp_path_factory.mktemp("class"), STUDENTS, log=ARTIFACTS / "hub-tests.log")
    try:
        yield hub
    finally:
        print(f"--- hub log (tail) ---\n{hub.log_tail()}")
        stop_hub(hub)


@pytest.fixture
def browser(pw, tmp_path):
    """Opens a fresh Chromium profile per user: each has their own cookies, as on their own laptops."""
    contexts = []

    def open_as(user: str):
        context = launch_browser(pw, tmp_path / f"profile-{user}")
        context.set_default_timeout(60_000)
        contexts.append(context)
        return context.new_page()

    yield open_as
    for context in contexts:
        context.close()


def runs_of(hub, user: str) -> list[Path]:
    return sorted(p.parent for p in (hub.class_dir / "runs" / user).glob("*/*/config.json"))


KERNEL_PROBE_JS = """async (code) => {
  const cfg = JSON.parse(document.getElementById("jupyter-config-data").textContent);
  const url = location.origin.replace(/^http/, "ws") + cfg.baseUrl + "api/kernels/" + cfg.kernelId + "/channels";
  const msg = (id, type, content) => JSON.stringify({header: {msg_id: id, msg_type: type, session: "probe",
    username: "", version: "5.3"}, parent_header: {}, metadata: {}, content, channel: "shell", buffers: []});
  return await new Promise(resolve => {
    const ws = new WebSocket(url), got = {info: [], execute: []};
    ws.onopen = () => {
      ws.send(msg("probe-execute", "execute_request", {code, silent: false, store_history: false,
        user_expressions: {}, allow_stdin: false}));
      ws.send(msg("probe-info", "kernel_info_request", {}));
    };
    ws.onmessage = e => {
      if (typeof e.data !== "string") return;
      const m = JSON.parse(e.data), parent = (m.parent_header || {}).msg_id;
      if (parent === "probe-info" && m.header.msg_type.endsWith("_reply")) got.info.push(m.header.msg_type);
      if (parent === "probe-execute" && m.header.msg_type !== "status") got.execute.push(m.header.msg_type);
    };
    setTimeout(() => { ws.close(); resolve(got); }, 4000);
  });
}"""


def xsrf_fetch(page, method: str, path: str) -> int:
    """A same-origin API call from the page, with the hub's XSRF cookie (as JupyterHub's own pages do)."""
    return page.evaluate(
        """async ([method, path]) => {
             const xsrf = (document.cookie.match(/_xsrf=([^;]+)/) || [])[1] || "";
             const r = await fetch(path, {method, headers: {"X-XSRFToken": decodeURIComponent(xsrf)}});
             return r.status; }""",
        [method, path],
    )


def test_two_students_train_apart_and_the_teacher_sees_both(hub, browser):
    pages = {}
    for user in STUDENTS:
        page = pages[user] = browser(user)
        log_in(page, hub, user)  # the hub starts the student's server and sends them to their dashboard
        page.wait_for_url(re.compile(rf"/user/{user}/voila/render/dashboard\.ipynb"), timeout=120_000)
        page.wait_for_function(APP_READY_JS, timeout=120_000)
        page.goto(hub.url + f"user/{user}/voila/render/dashboard.ipynb?steps=1000000")  # a run that lasts
        page.wait_for_function(APP_READY_JS, timeout=120_000)
    for page in pages.values():
        page.locator(".bpviz-start").click(force=True)
    for user, page in pages.items():
        wait_points(page, "batch loss", 3, timeout_ms=60_000)
        screenshot(page, f"hub-1-{user}-training")
        # plotly's widget code came over HTTP from the student's own server (bin/serve_voila.py as a
        # server extension), once, not inside the widget state
        fetched = page.evaluate("() => performance.getEntriesByType('resource').map(e => e.name)")
        bundles = [url for url in fetched if "/bpviz/plotly/widgetbundle.js?v=" in url]
        assert bundles and all(f"/user/{user}/bpviz/plotly/" in url for url in bundles), fetched

    # each student's runs are in their own folder, and only there
    for user in STUDENTS:
        assert len(runs_of(hub, user)) == 1, user
    other = {"alice": "bob", "bob": "alice"}
    for user, page in pages.items():  # in a second tab, so that the dashboard goes on training
        tab = page.context.new_page()
        reply = tab.goto(hub.url + f"user/{other[user]}/voila/render/dashboard.ipynb")
        assert reply.status == 403, (user, reply.status)
        assert tab.locator(".bpviz-start").count() == 0
        reply = tab.goto(hub.url + "services/class-overview/")
        assert reply.status == 403, (user, reply.status)
        screenshot(tab, f"hub-2-{user}-refused-the-overview")
        tab.close()

    # the teacher's overview: both students, their runs live
    teacher = browser("teacher")
    log_in(teacher, hub, "teacher")
    teacher.wait_for_url(re.compile(r"/user/teacher/"), timeout=120_000)
    teacher.goto(hub.url + "services/class-overview/")
    for user in STUDENTS:
        row = teacher.locator(f"tr[data-user={user}]")
        row.wait_for(timeout=20_000)
        assert "spirals" in row.inner_text()
    first = {u: int(teacher.locator(f"tr[data-user={u}] td").nth(3).inner_text().split("/")[0]) for u in STUDENTS}
    teacher.wait_for_timeout(4500)  # two refreshes: the steps have moved on
    for user in STUDENTS:
        cells = teacher.locator(f"tr[data-user={user}] td")
        assert cells.nth(1).inner_text() == "running"
        assert int(cells.nth(3).inner_text().split("/")[0]) > first[user], user
        assert re.search(r"\d", cells.nth(5).inner_text()), "a loss value"
        assert re.search(r"\d\.\de[+-]\d+", cells.nth(6).inner_text()), "a κ value"
    screenshot(teacher, "hub-3-teacher-overview")

    # the teacher pushes a preset and a message; both students' dashboards show it and can load it
    teacher.select_option("#preset", "spirals-relu")
    teacher.fill("#message", "Now look at the decision boundary")
    teacher.click("#push button[type=submit]")
    teacher.locator("#note", has_text="spirals-relu").wait_for(timeout=10_000)
    note = pages["alice"].locator(".bpviz-class-note")  # the open page shows it within the 2 s it polls
    note.wait_for(state="visible", timeout=15_000)
    assert "decision boundary" in note.inner_text() and "spirals-relu" in note.inner_text()
    pages["alice"].locator(".bpviz-class-note-load").click()
    expect(pages["alice"].locator(".bpviz-preset select")).to_have_value("spirals-relu", timeout=15_000)
    screenshot(pages["alice"], "hub-4-student-sees-the-teachers-preset")

    # a culled (here: stopped) server: the student gets the hub's page, the runs stay on disk and in the overview
    admin = teacher.context.new_page()  # as from the hub's admin page, whose XSRF cookie is on /hub/
    admin.goto(hub.url + "hub/home")
    assert xsrf_fetch(admin, "DELETE", "/hub/api/users/alice/server") in (202, 204)
    admin.close()
    teacher.wait_for_function(
        "() => { const r = document.querySelector('tr[data-user=alice]');"
        " return r && r.children[1].textContent === 'stopped'; }",
        timeout=60_000,
    )
    row = teacher.locator("tr[data-user=alice]").inner_text()
    assert "spirals" in row and ("stopped early" in row or "interrupted" in row)  # not "running"
    assert len(runs_of(hub, "alice")) >= 1
    screenshot(teacher, "hub-5-overview-after-a-server-stopped")
    pages["alice"].goto(hub.url + "user/alice/voila/render/dashboard.ipynb")
    pages["alice"].locator("text=not running").first.wait_for(timeout=30_000)
    screenshot(pages["alice"], "hub-6-student-server-not-running")


def test_a_wrong_password_and_an_expired_session_give_the_login_page(hub, browser):
    page = browser("bob")
    log_in(page, hub, "bob", password="not-the-password")
    page.locator("text=Invalid username or password").wait_for(timeout=10_000)
    screenshot(page, "hub-7-wrong-password")
    log_in(page, hub, "bob")
    page.wait_for_url(re.compile(r"/user/bob/voila/"), timeout=120_000)
    page.wait_for_function(APP_READY_JS, timeout=120_000)
    # the page cannot run code in its kernel: an execute_request is dropped, a kernel_info_request answered
    marker = hub.class_dir / "code-ran"
    replies = page.evaluate(KERNEL_PROBE_JS, f"open({str(marker)!r}, 'w').close()")
    assert replies == {"info": ["kernel_info_reply"], "execute": []}, replies
    assert not marker.exists()
    page.context.clear_cookies()  # the session is gone, as when it expires
    page.goto(hub.url + "user/bob/voila/render/dashboard.ipynb")
    page.wait_for_url(re.compile(r"/hub/login"), timeout=30_000)
    assert page.locator("input[name=password]").count() == 1
