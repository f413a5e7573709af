"""A student with a real browser for bench/class_load.py: headless Chromium (Playwright's async API,
one browser context per student, so each has their own cookies) logs in to the hub, lands in the
dashboard with their preset, clicks Start and watches; the page itself counts the loss panel's
redraws, so these figures include drawing, which the light clients' do not."""

from __future__ import annotations

import re
import time
import urllib.parse

from dashboard import COUNTERS_JS, READ_COUNTERS_JS
from voila_chromium import ALL_TRACES, APP_READY_JS, ARTIFACTS

FIRST_POINT_JS = "() => { const t = %s.find(t => t.name === 'batch loss'); return !!(t && t.x && t.x.length); }" % (
    ALL_TRACES
)


class BrowserStudent:
    """Same fields as bench/class_load.py's LightStudent: ready (seconds from submitting the login
    form to the app's controls and panels in the page, the server's spawn included), spawned (from
    submitting to the browser's arrival at the student's server), clicked and
    first_point (monotonic times), rate (loss-trace changes per second in the page over the second
    half of the watch), error."""

    kind = "browser"

    def __init__(self, hub, user: str, dashboard: str, browser):
        self.hub, self.user, self.dashboard, self.browser = hub, user, dashboard, browser
        self.ready = self.spawned = self.clicked = self.first_point = self.rate = None
        self.error = ""

    async def run(self, watch: float) -> None:
        context = await self.browser.new_context(viewport={"width": 1400, "height": 1000})
        page = await context.new_page()
        try:
            page.set_default_timeout(180_000)
            # the hub's own route that starts the server and then sends the student on to `next`
            spawn = f"/hub/spawn/{self.user}?next=" + urllib.parse.quote(f"/user/{self.user}/{self.dashboard}")
            await page.goto(self.hub.url + "hub/login?next=" + urllib.parse.quote(spawn, safe=""))
            await page.fill("input[name=username]", self.user)
            await page.fill("input[name=password]", self.hub.passwords[self.user])
            t_submit = time.monotonic()
            await page.click("input[type=submit], button[type=submit]")
            await page.wait_for_url(
                re.compile(rf"/user/{self.user}/voila/render/"), timeout=180_000, wait_until="commit"
            )
            self.spawned = time.monotonic() - t_submit
            await page.wait_for_function(APP_READY_JS, timeout=180_000, polling=200)
            self.ready = time.monotonic() - t_submit
            await page.click(".bpviz-start")
            self.clicked = time.monotonic()
            await page.wait_for_function(FIRST_POINT_JS, timeout=120_000, polling=100)
            self.first_point = time.monotonic()
            await page.evaluate(COUNTERS_JS)
            await page.wait_for_timeout(watch / 2 * 1000)  # the first half: warming up, not counted
            c0 = await page.evaluate(READ_COUNTERS_JS)
            await page.wait_for_timeout(watch / 2 * 1000)
            c1 = await page.evaluate(READ_COUNTERS_JS)
            self.rate = (c1["changes"] - c0["changes"]) / ((c1["t"] - c0["t"]) / 1000)
            await page.screenshot(path=str(ARTIFACTS / f"class-load-{self.user}.png"))
        except Exception as exc:  # reported per student, the others go on
            self.error = f"{type(exc).__name__}: {str(exc).splitlines()[0]}"
            await page.screenshot(path=str(ARTIFACTS / f"class-load-{self.user}-failed.png"))
        finally:
            await context.close()
