"""The page's layout: controls in a column of their own, the figure filling the rest of the window.

The app fills the window and never makes the page scroll: the control column scrolls by itself,
and the figure takes the window's width (its height is set in its layout: plotly's widget does not
take its element's). The projector layout (class ``bpviz-projector``) shows only the controls a
demonstration needs, in larger type, and a figure that fits a 1280×720 screen.
"""

from __future__ import annotations

import html

import ipywidgets as W

TITLE = (
    '<div style="line-height:1.35"><b style="font-size:15px">bpviz</b>: why back-propagation trains some '
    "networks well and others badly. Pick a preset or change the network, press <b>Start</b>, and watch the "
    "loss next to the condition numbers of every block's local Hessian (a change of network starts a new run).</div>"
)
#: settings the projector layout leaves out (with the optimizer's options and "more settings"), so
#: that what a demonstration changes fits a 1280×720 screen
PROJECTOR_HIDES = ("init_std", "batch_size", "steps", "seed", "hessian_every")
PRESENT_TIP = "Projector layout: fewer controls, larger type; the share link keeps it"
SIDE_WIDTH = 330  # px: the control column
CSS = f"""
.bpviz-app {{ height: calc(100vh - 20px); overflow: hidden; align-items: stretch; }}
.bpviz-side > *, .bpviz-main > *, .bpviz-lesson > * {{ flex-shrink: 0; }}
.bpviz-side {{ flex: 0 0 {SIDE_WIDTH}px; width: {SIDE_WIDTH}px; height: 100%; overflow-y: auto;
  overflow-x: hidden; padding-right: 6px; box-sizing: border-box; }}
.bpviz-main {{ flex: 1 1 auto; min-width: 0; height: 100%; overflow-y: auto; overflow-x: hidden; }}
.bpviz-figure {{ width: 100%; min-width: 0; }}
.bpviz-single {{ display: flex; flex-direction: column; }}
.bpviz-single.bpviz-one {{ flex-direction: row; gap: 8px; }}
.bpviz-single.bpviz-one .bpviz-explain {{ flex: 0 0 260px; }}
.bpviz-single .bpviz-plot {{ flex: 1 1 auto; min-width: 0; }}
.bpviz-app .widget-button {{ overflow: visible; }}
.bpviz-projector .bpviz-secondary {{ display: none !important; }}
.bpviz-projector .bpviz-status, .bpviz-projector .bpviz-key {{ font-size: 15px; }}
"""


def style() -> W.HTML:
    """The page's style sheet, as a widget (Voila renders it with the app)."""
    return W.HTML(f"<style>{CSS}</style>", layout=W.Layout(display="none"))


def secondary(widget: W.Widget) -> W.Widget:
    """Mark ``widget`` as hidden in the projector layout."""
    widget.add_class("bpviz-secondary")
    return widget


def disable_all(widget: W.Widget) -> None:
    """Disable ``widget`` and every control inside it (a locked section stays readable)."""
    if hasattr(widget, "disabled"):
        widget.disabled = True
    for child in getattr(widget, "children", ()):
        disable_all(child)


def share_link(query: str, page_url: str = "") -> str:
    """The share section's full link and its copy button. The link's target is relative, so the
    browser makes it absolute from the page's own address (behind any proxy or prefix), and the
    button copies that (execCommand, which works on plain http too, unlike navigator.clipboard);
    its text is ``page_url`` + ``query``, the address as the server saw it."""
    href = html.escape(query, quote=True)
    copy = (
        "const a=this.parentElement.querySelector('a');const t=document.createElement('textarea');"
        "t.value=a.href;document.body.appendChild(t);t.select();document.execCommand('copy');t.remove();"
        "this.textContent='Copied';setTimeout(()=>{this.textContent='Copy link'},1500);"
    )
    return (
        f'<div style="font-size:12px;line-height:1.3"><a class="bpviz-share-url" href="{href}" target="_blank" '
        f'style="word-break:break-all">{html.escape(page_url + query)}</a> '
        f'<button class="bpviz-copy-link" type="button" onclick="{html.escape(copy, quote=True)}">Copy link</button>'
        "</div>"
    )
