"""The dashboard in a real browser: Voila serving notebooks/dashboard.ipynb, headless Chromium.

Every test opens the app as a new user (fresh browser profile, so a new kernel). Assertions read
what the page shows: plotly's trace data (``.js-plotly-plot``'s ``data``), the status line (whose lr
is the one the training worker uses) and the message line. Screenshots go to test-artifacts/.
Runs are made long (``?steps=200000`` in the link) so that they are still going when we look.
"""

from __future__ import annotations

import math
import time
import urllib.parse

from harness import (
    ALL_TRACES,
    Clock,
    http_get,
    lr_readout,
    open_app,
    press_lr,
    screenshot,
    status_lr,
    status_text,
    trace_names,
    traces,
    wait_points,
)
from playwright.sync_api import expect

LONG = "steps=200000"


def click(page, selector: str) -> None:
    """A real mouse click. ``force`` skips Playwright's wait for the element to be stable across
    animation frames, which takes seconds while plotly redraws keep the page's main thread busy."""
    page.locator(selector).click(force=True)


def start(page):
    click(page, ".bpviz-start")
    expect(page.locator(".bpviz-status")).to_contain_text("running", timeout=30_000)


def test_new_user_picks_a_preset_starts_and_the_loss_curve_grows(page, voila_server):
    clock = Clock()
    open_app(page, voila_server.url)
    clock("app ready")
    page.locator(".bpviz-preset select").select_option(label="deep-tanh-orthogonal")
    # the preset's settings reach the controls (16 tanh blocks, orthogonal init)
    expect(page.locator(".bpviz-depth input")).to_have_value("16", timeout=15_000)
    expect(page.locator(".bpviz-init select")).to_have_value("orthogonal")
    clock("preset applied")
    # a longer run than the preset's 1000 steps, so that it is still running when we look twice
    steps = page.locator(".bpviz-steps input")
    steps.fill("200000")
    steps.press("Enter")
    page.wait_for_timeout(500)
    expect(page.locator(".bpviz-depth input")).to_have_value("16")
    start(page)
    clock("running")
    first = wait_points(page, "batch loss", n=2, timeout_ms=60_000)
    clock("loss points")
    later = wait_points(page, "batch loss", n=2, after_step=first["x"][-1] + 50, timeout_ms=30_000)
    clock("more loss points")
    assert later["x"][-1] > first["x"][-1] and len(later["x"]) >= len(first["x"])
    assert all(math.isfinite(v) for v in later["y"])
    # the condition-number panel fills as well
    kappa = [n for n in trace_names(page) if n.startswith("κ input · block")]
    assert kappa, trace_names(page)
    wait_points(page, kappa[0], n=1, timeout_ms=30_000)
    clock("condition numbers")
    screenshot(page, "01-preset-deep-tanh-orthogonal-running")
    clock("screenshot")
    assert "running" in status_text(page)


def test_changing_the_step_size_while_running_reaches_the_worker(page, voila_server):
    clock = Clock()
    open_app(page, voila_server.url + "?" + LONG)
    clock("app ready")
    before = status_lr(page)
    start(page)
    clock("running")
    wait_points(page, "batch loss", n=2)
    clock("loss points")
    shown = press_lr(page, "ArrowRight", "ArrowRight", "ArrowRight", "ArrowRight")
    clock("4 x ArrowRight")
    assert not math.isclose(shown, before, rel_tol=0.01), (shown, before)
    # the status line's lr is read inside the training worker: it proves the kernel applied it
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and not math.isclose(status_lr(page) or 0, shown, rel_tol=0.02):
        page.wait_for_timeout(250)
    assert math.isclose(status_lr(page) or 0, shown, rel_tol=0.02), (status_text(page), shown)
    clock("status shows the new lr")
    assert "running" in status_text(page)
    # and down again, with the other arrow key
    shown2 = press_lr(page, "ArrowLeft", "ArrowLeft", "ArrowLeft", "ArrowLeft", "ArrowLeft", "ArrowLeft")
    clock("6 x ArrowLeft")
    assert shown2 < shown
    expect(page.locator(".bpviz-status")).to_contain_text(f"lr {shown2:.2e}", timeout=20_000)
    clock("status shows the new lr")
    # training continued through both changes
    x = traces(page, "batch loss")["batch loss"]["x"][-1]
    wait_points(page, "batch loss", after_step=x, timeout_ms=30_000)
    clock("loss grew")
    screenshot(page, "02-step-size-changed-while-running")
    clock("screenshot")


def test_batch_norm_on_changes_the_local_hessian_condition_numbers(page, voila_server):
    clock = Clock()
    open_app(page, voila_server.url + "?" + LONG + "&depth=3")
    clock("app ready")
    name = "κ input · block 1"
    start(page)
    clock("running")
    before = wait_points(page, name, n=3, timeout_ms=60_000)
    clock("3 condition numbers")
    screenshot(page, "03a-batch-norm-off-running")
    clock("screenshot")
    click(page, ".bpviz-bn input[type=checkbox]")
    expect(page.locator(".bpviz-bn input[type=checkbox]")).to_be_checked()
    clock("BN on")
    click(page, ".bpviz-reset")
    expect(page.locator(".bpviz-status")).to_contain_text("idle", timeout=30_000)
    clock("reset")
    start(page)
    clock("running")
    after = wait_points(page, name, n=3, timeout_ms=60_000)
    clock("3 condition numbers")
    n = min(len(before["y"]), len(after["y"]))
    assert any(not math.isclose(a, b, rel_tol=1e-3) for a, b in zip(before["y"][:n], after["y"][:n])), (
        before["y"][:n],
        after["y"][:n],
    )
    # the run without BN stays on the plot as an overlay, labelled by what it was
    overlays = [t for t in trace_names(page) if t.endswith("· batch loss") and t != "batch loss"]
    assert any(t.startswith("run 1: no BN, lr 0.05") for t in overlays), trace_names(page)
    expect(page.locator(".bpviz-key")).to_contain_text("(now): BN, lr 0.05")
    screenshot(page, "03b-batch-norm-on-with-earlier-run-overlaid")


def test_condition_numbers_that_are_bounds_say_so_in_the_page(page, voila_server):
    """A BN CNN's input Hessians are too large to solve live: the page draws their κ as open
    triangles, says "κ ≥" in each point's hover, and the note under the figure names the probe and the bounds."""
    clock = Clock()
    open_app(page, voila_server.url + "?" + LONG + "&dataset=digits&arch=cnn&depth=2&width=16&batch_norm=true")
    clock("app ready")
    note = page.locator(".bpviz-hessian-note")
    expect(note).to_contain_text(
        "first 32 training samples (batch norm's statistics over these); training batches have 64", timeout=15_000
    )
    start(page)
    name = "κ input · block 1"
    wait_points(page, name, n=1, timeout_ms=60_000)
    clock("condition numbers")
    expect(note).to_contain_text("△ κ ≥: lower bounds (input κ of blocks 0, 1: the exact spectrum", timeout=15_000)
    symbols, texts = bound_marks(page, name)
    assert set(symbols) == {"triangle-up-open"} and set(texts) == {"κ ≥"}, (symbols, texts)  # never exact
    screenshot(page, "07-bn-cnn-kappa-lower-bounds")
    # kept as an overlay, the run's grey mean κ over the blocks is a lower bound too, and says so
    click(page, ".bpviz-bn input[type=checkbox]")
    click(page, ".bpviz-reset")
    expect(page.locator(".bpviz-status")).to_contain_text("idle", timeout=30_000)
    mean = "run 1: BN, lr 0.05 · κ input · mean"
    page.wait_for_function("(name) => %s.some(t => t.name === name)" % ALL_TRACES, arg=mean, timeout=30_000)
    symbols, texts = bound_marks(page, mean)
    assert symbols and set(symbols) == {"triangle-up-open"} and set(texts) == {"κ ≥"}, (symbols, texts)
    expect(note).to_contain_text("Every κ of this run is exact. △ on a grey line: an earlier run's mean κ")
    expect(page.locator(".bpviz-key")).to_contain_text("run 2 (now): no BN")  # the run BN's click made took no step
    screenshot(page, "07c-earlier-runs-mean-kappa-a-lower-bound")


def test_a_kappa_cut_by_the_zero_floor_says_so_in_the_page(page, voila_server):
    """The spirals ReLU MLP's weight spectra go on below the report's zero floor from the first
    report: the page draws those κ as open triangles with "κ ≥" and the note says why."""
    query = "&dataset=spirals&depth=3&width=64&activation=relu&init=kaiming&lr=0.15&n_train=1000&n_test=500"
    open_app(page, voila_server.url + "?" + LONG + query)
    start(page)
    name = "κ weight · block 1"
    wait_points(page, name, n=1, timeout_ms=60_000)
    note = page.locator(".bpviz-hessian-note")
    expect(note).to_contain_text("weight κ of block", timeout=15_000)
    expect(note).to_contain_text("the spectrum goes on below 1e-9 λmax")
    symbols, texts = bound_marks(page, name)
    assert "triangle-up-open" in symbols and "κ ≥" in texts, (symbols, texts)
    assert all((s == "triangle-up-open") == (t == "κ ≥") for s, t in zip(symbols, texts))
    screenshot(page, "07b-kappa-cut-by-the-zero-floor")


def bound_marks(page, name: str) -> tuple[list, list]:
    """The page's marker symbol and hover text of each point of trace ``name``, as plotly holds them."""
    return page.evaluate(
        """(name) => { const t = %s.find(t => t.name === name);
            return [[].concat(t.marker.symbol), [].concat(t.text)]; }"""
        % ALL_TRACES,
        name,
    )


def test_a_teachers_link_hides_the_controls_it_names(page, voila_server):
    open_app(
        page,
        voila_server.url + "?" + LONG + "&preset_hide=true&optimizer_hide=true&options_hide=true"
        "&compare_hide=true&share_hide=true&init=orthogonal&init_lock=true",
    )
    for hidden in (".bpviz-preset", ".bpviz-optimizer", ".bpviz-options", ".bpviz-share"):
        expect(page.locator(hidden)).to_be_hidden()
    for shown in (".bpviz-depth", ".bpviz-init", ".bpviz-bn", ".bpviz-lr", ".bpviz-start"):
        expect(page.locator(shown)).to_be_visible()
    expect(page.locator(".bpviz-init select")).to_have_value("orthogonal")
    expect(page.locator(".bpviz-init select")).to_be_disabled()  # locked: shown, greyed out
    expect(page.locator(".bpviz-depth input")).to_be_enabled()
    start(page)
    wait_points(page, "batch loss", n=2)
    screenshot(page, "08-teacher-link-hides-preset-optimizer-compare-share")


def test_a_diverging_run_is_reported_and_the_page_keeps_working(page, voila_server):
    # ReLU, 3 blocks, lr 10 (the slider's maximum): NaN loss within a few dozen steps
    open_app(page, voila_server.url + "?" + LONG + "&activation=relu&depth=3")
    top = press_lr(page, "End")
    assert math.isclose(top, 10.0), top
    expect(page.locator(".bpviz-status")).to_contain_text("lr 1.00e+01", timeout=20_000)
    click(page, ".bpviz-start")
    message = page.locator(".bpviz-message")
    expect(message).to_contain_text("diverged", timeout=60_000)
    expect(message).to_contain_text("NaN")
    expect(page.locator(".bpviz-status")).to_contain_text("diverged")
    screenshot(page, "04a-run-diverged-at-lr-10")
    # a sane step size, Reset, Start: training works again in the same page
    press_lr(page, "Home")
    click(page, ".bpviz-reset")
    expect(page.locator(".bpviz-status")).to_contain_text("idle", timeout=30_000)
    expect(message).not_to_contain_text("diverged", timeout=10_000)
    start(page)
    first = wait_points(page, "batch loss", n=2, timeout_ms=60_000)
    later = wait_points(page, "batch loss", after_step=first["x"][-1], timeout_ms=30_000)
    assert all(math.isfinite(v) for v in later["y"])
    assert status_lr(page) == 1e-4
    screenshot(page, "04b-after-divergence-reset-and-restarted")


def test_reloading_the_page_gives_a_working_app(page, voila_server):
    clock = Clock()
    open_app(page, voila_server.url + "?" + LONG)
    clock("app ready")
    start(page)
    wait_points(page, "batch loss", n=2)
    clock("loss points")
    page.reload(timeout=120_000)
    page.wait_for_function("() => !!document.querySelector('.bpviz-start')", timeout=120_000)
    expect(page.locator(".bpviz-status")).to_contain_text("idle", timeout=120_000)
    clock("reloaded")
    for cls in (
        "preset",
        "dataset",
        "depth",
        "width",
        "activation",
        "init",
        "bn",
        "skip",
        "optimizer",
        "lr",
        "batch",
        "seed",
        "hessian",
        "start",
        "pause",
        "stop",
        "reset",
        "share",
        "json",
    ):
        assert page.locator(f".bpviz-{cls}").count() == 1, cls
    start(page)
    first = wait_points(page, "batch loss", n=2, timeout_ms=60_000)
    wait_points(page, "batch loss", after_step=first["x"][-1], timeout_ms=30_000)
    clock("loss points")
    screenshot(page, "05-after-reload-running")


def test_settings_round_trip_through_the_url(page, voila_server):
    open_app(page, voila_server.url + "?depth=3&batch_norm=true&lr=0.3")
    expect(page.locator(".bpviz-depth input")).to_have_value("3")
    expect(page.locator(".bpviz-bn input[type=checkbox]")).to_be_checked()
    assert math.isclose(lr_readout(page), 0.3, rel_tol=0.06), lr_readout(page)  # the slider's grid: 10^-0.5
    assert math.isclose(status_lr(page), 0.3, rel_tol=1e-6), status_text(page)
    share = dict(urllib.parse.parse_qsl(page.locator(".bpviz-share input").input_value().lstrip("?")))
    assert share.get("depth") == "3" and share.get("batch_norm") == "true" and float(share["lr"]) == 0.3, share
    assert '"depth": 3' in page.locator(".bpviz-json textarea").input_value()
    # strip_sources: the page does not carry the notebook's code
    assert "bpviz.widgets.app" not in page.content()
    screenshot(page, "06a-opened-from-link-depth3-bn-lr0.3")

    open_app(page, voila_server.url + "?depth=abc&nonsense=1")
    expect(page.locator(".bpviz-depth input")).to_have_value("4")  # RunConfig's default
    expect(page.locator(".bpviz-bn input[type=checkbox]")).not_to_be_checked()
    message = page.locator(".bpviz-message")
    expect(message).to_contain_text("nonsense")
    expect(message).to_contain_text("depth")
    screenshot(page, "06b-opened-from-bad-link-defaults-and-message")


def test_the_server_exposes_no_files(voila_server):
    """Voila serves one notebook: every other path redirects to /voila/files/<path>, which serves
    nothing here (voila.json: empty allowlist), so neither the repository nor the notebook is readable."""
    port = voila_server.port
    paths = (
        "/tree",
        "/files/README.md",
        "/notebooks/dashboard.ipynb",
        "/lab",
        "/api/contents/README.md",
        "/voila/api/contents/",
        "/voila/tree",
        "/voila/files/README.md",
        "/voila/files/dashboard.ipynb",
        "/voila/files/../README.md",
        "/voila/files/%2e%2e/README.md",
        "/voila/files/../bpviz/config.py",
        "/voila/render/dashboard.ipynb",
    )
    for path in paths:
        status, location = http_get(port, path)
        if status in (301, 302):
            assert location.startswith("/voila/files/"), (path, location)
            status, location = http_get(port, location)
        assert status in (403, 404), (path, status)
