"""The dashboard at a projector and in a lesson, in a real browser (Voila + headless Chromium).

What a class sees at 1280×720: everything on one screen without the page scrolling, no panel title
over another title or axis title, no button label cut; a 2-D dataset's decision boundary filling
live (its class map on the plane's coordinates, the training points on top); an earlier run
labelled with the step sizes it really used after a mid-run change.
"""

from __future__ import annotations

import re

from harness import ALL_TRACES, open_app, press_lr, screenshot, status_lr, trace_names, wait_points
from playwright.sync_api import expect

LONG = "steps=200000"

#: the page-level boxes that must not overlap: panel titles, legends, notes and axis titles, in the page's pixels
TEXT_BOXES_JS = """() => [...document.querySelectorAll(['.annotation-text', '.xtitle', '.ytitle', '.gtitle',
    '.legendtext'].map(c => '.js-plotly-plot ' + c).join(', '))]
  .filter(e => e.textContent.trim())
  .map(e => { const r = e.getBoundingClientRect();
              return {text: e.textContent, x0: r.left, x1: r.right, y0: r.top, y1: r.bottom}; })"""


def start(page) -> None:
    page.locator(".bpviz-start").click(force=True)
    expect(page.locator(".bpviz-status")).to_contain_text("running", timeout=30_000)


def overlapping(boxes: list[dict]) -> list[tuple[str, str]]:
    return [
        (a["text"], b["text"])
        for i, a in enumerate(boxes)
        for b in boxes[i + 1 :]
        if a["x0"] < b["x1"] - 1 and b["x0"] < a["x1"] - 1 and a["y0"] < b["y1"] - 1 and b["y0"] < a["y1"] - 1
    ]


def test_the_projector_layout_fits_1280x720_and_draws_the_decision_boundary(page, voila_server):
    page.set_viewport_size({"width": 1280, "height": 720})
    open_app(page, voila_server.url + "?" + LONG + "&dataset=spirals&present=true")
    expect(page.locator(".bpviz-projector")).to_have_count(1)
    for hidden in (".bpviz-compare", ".bpviz-share-link", ".bpviz-seed", ".bpviz-lesson"):
        expect(page.locator(hidden).first).to_be_hidden()
    start(page)
    wait_points(page, "batch loss", n=2)
    page.wait_for_function(  # the class map, placed on the plane, and the training points on it
        """() => { const all = %s;
                   const t = all.find(t => t.name === 'decision boundary');
                   const p = all.find(t => t.name === 'training points');
                   return !!(t && t.z && t.z.length > 10 && Number.isFinite(t.x0) && t.dx > 0
                             && p && p.x && p.x.length > 10); }"""
        % ALL_TRACES,
        timeout=60_000,
    )
    ticks = page.evaluate(  # the boundary's axes carry coordinates: the plane spans the spirals
        """() => { const gd = document.querySelector('.bpviz-panel-decision-boundary.js-plotly-plot');
                   return gd._fullLayout.xaxis.range; }"""
    )
    assert ticks[0] < -1 and ticks[1] > 1, ticks
    size = page.evaluate(
        "() => [document.scrollingElement.scrollHeight, window.innerHeight, "
        "document.scrollingElement.scrollWidth, window.innerWidth]"
    )
    assert size[0] <= size[1] and size[2] <= size[3], size  # the page itself does not scroll
    for selector in (".bpviz-start", ".bpviz-lr", ".bpviz-preset", ".bpviz-plot"):
        box = page.locator(selector).first.bounding_box()
        assert box and box["y"] >= 0 and box["y"] + box["height"] <= 720 and box["x"] + box["width"] <= 1280, (
            selector,
            box,
        )
    assert overlapping(page.evaluate(TEXT_BOXES_JS)) == []
    cut = page.evaluate(
        "() => [...document.querySelectorAll('.bpviz-app button')].filter(b => b.offsetParent && "
        "b.scrollWidth > b.clientWidth + 1).map(b => b.textContent)"
    )
    assert cut == [], cut
    screenshot(page, "10-projector-1280x720-spirals-decision-boundary")


def test_a_wide_screen_and_a_single_panel_view(page, voila_server):
    page.set_viewport_size({"width": 1920, "height": 1080})
    open_app(page, voila_server.url + "?" + LONG + "&depth=3")
    start(page)
    wait_points(page, "κ input · block 1", n=2)
    assert overlapping(page.evaluate(TEXT_BOXES_JS)) == []
    width = page.locator(".bpviz-plot").bounding_box()["width"]
    assert width > 1400, width  # the panels take the screen's width, two to a row
    assert all(
        box["width"] > 0.45 * width for box in map(lambda p: p.bounding_box(), page.locator(".js-plotly-plot").all())
    )
    screenshot(page, "11-wide-screen-1920x1080")
    page.locator(".bpviz-view select").select_option(label="loss")
    page.wait_for_function(  # the loss panel alone, the whole figure's width
        """() => { const plots = document.querySelectorAll('.js-plotly-plot');
                   return plots.length === 1 && plots[0].classList.contains('bpviz-panel-loss')
                          && plots[0].getBoundingClientRect().width > 1000; }""",
        timeout=30_000,
    )
    expect(page.locator(".bpviz-explain")).to_contain_text("The loss of each step")
    expect(page.locator(".bpviz-share-link a")).to_have_attribute("href", re.compile(r"view=loss"))
    screenshot(page, "12-single-panel-view-loss")


def test_an_earlier_run_is_labelled_with_the_step_sizes_it_used(page, voila_server):
    open_app(page, voila_server.url + "?" + LONG + "&depth=3&lr=0.05")
    start(page)
    wait_points(page, "batch loss", n=3)
    shown = press_lr(page, "ArrowRight", "ArrowRight")
    # the status line shows the step size the training worker uses: both presses have reached it
    expect(page.locator(".bpviz-status")).to_contain_text(f"lr {shown:.2e}", timeout=30_000)
    used = status_lr(page)
    # the step-size change is marked on the loss curve
    page.wait_for_function(
        """() => (document.querySelector('.bpviz-panel-loss.js-plotly-plot').layout.annotations || [])
                  .some(a => a.name === 'mark' && a.text.startsWith('lr '))""",
        timeout=30_000,
    )
    page.locator(".bpviz-bn input[type=checkbox]").click(force=True)
    expect(page.locator(".bpviz-status")).to_contain_text("idle", timeout=30_000)
    # two presses, two changes: the label names the first and the last step size ("0.05→…→0.178")
    label = re.compile(rf"run 1: no BN, lr 0\.05→(…→)?{re.escape(f'{used:.3g}')} · batch loss")
    page.wait_for_function(
        "() => %s.some(t => t.name.startsWith('run 1: '))" % ALL_TRACES,
        timeout=30_000,
    )
    assert any(label.fullmatch(t) for t in trace_names(page)), trace_names(page)
    expect(page.locator(".bpviz-key")).to_contain_text(f"{used:.3g}")
    screenshot(page, "13-overlay-labelled-with-the-step-sizes-used")


FOCUSED_IN_JS = "(selector) => !!(document.activeElement && document.activeElement.closest(selector))"


def tab_to(page, selector: str, backwards: bool = False, limit: int = 120) -> None:
    """Press Tab (Shift+Tab backwards) until the keyboard focus is inside ``selector``."""
    for _ in range(limit):
        if page.evaluate(FOCUSED_IN_JS, selector):
            return
        page.keyboard.press("Shift+Tab" if backwards else "Tab")
    raise AssertionError(f"{selector} not reached with {limit} presses of {'Shift+' if backwards else ''}Tab")


def test_the_lesson_can_be_followed_with_the_keyboard_alone(page, voila_server):
    """No mouse: Tab to the lesson's load button, Enter loads its preset, Tab back to Start, Enter
    trains; Next moves the lesson on; the focused control is visibly marked."""
    open_app(page, voila_server.url + "?" + LONG)
    expect(page.locator(".bpviz-lesson-counter")).to_contain_text("Step 1 of")
    tab_to(page, ".bpviz-lesson-load")
    outline = page.evaluate(
        "() => { const s = getComputedStyle(document.activeElement); return [s.outlineStyle, s.boxShadow]; }"
    )
    assert outline[0] != "none" or outline[1] != "none", outline  # the focus is visible
    page.keyboard.press("Enter")
    expect(page.locator(".bpviz-lesson-loaded")).to_contain_text("spirals-linear is loaded", timeout=30_000)
    expect(page.locator(".bpviz-preset select")).to_have_value("spirals-linear")
    tab_to(page, ".bpviz-start", backwards=True)
    page.keyboard.press("Enter")
    expect(page.locator(".bpviz-status")).to_contain_text("running", timeout=30_000)
    wait_points(page, "batch loss", n=2)
    page.wait_for_function(  # the lesson's first picture: the class map with the points on it
        """() => { const p = %s.find(t => t.name === 'training points');
                   return !!(p && p.x && p.x.length > 10); }"""
        % ALL_TRACES,
        timeout=60_000,
    )
    tab_to(page, ".bpviz-lesson-next")
    page.keyboard.press("Enter")
    expect(page.locator(".bpviz-lesson-counter")).to_contain_text("Step 2 of")
    expect(page.locator(".bpviz-lesson-load")).to_contain_text("spirals-relu")
    screenshot(page, "14-lesson-followed-with-the-keyboard")


#: [the width the panels' SVGs span, the width of the box they are in, the rightmost SVG edge, the window's width]
FIGURE_FIT_JS = """() => { const svgs = [...document.querySelectorAll('.js-plotly-plot .main-svg')]
      .map(svg => svg.getBoundingClientRect());
    const left = Math.min(...svgs.map(r => r.left)), right = Math.max(...svgs.map(r => r.right));
    return [right - left, document.querySelector('.bpviz-plot').getBoundingClientRect().width, right,
            window.innerWidth]; }"""


def test_the_figure_follows_the_window_when_it_is_resized(page, voila_server):
    page.set_viewport_size({"width": 1920, "height": 1080})
    open_app(page, voila_server.url + "?" + LONG + "&depth=3")
    wide = page.evaluate(FIGURE_FIT_JS)
    assert wide[0] > 1400, wide
    for width in (1280, 1024, 1600):  # narrower: nothing cut off at the right; wider: the space is used
        page.set_viewport_size({"width": width, "height": 800})
        page.wait_for_function(
            f"() => {{ const [span, box, right, win] = ({FIGURE_FIT_JS})();"
            " return Math.abs(span - box) < 2 && right <= win; }",
            timeout=10_000,
        )
        assert overlapping(page.evaluate(TEXT_BOXES_JS)) == []
    screenshot(page, "15-resized-to-1600x800")
