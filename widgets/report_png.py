"""A reproduction's figures as PNG files, drawn by plotly and rendered by kaleido (a headless
Chrome or Chromium): the same ``Chart`` list the HTML page draws, in the same colours.

``bpviz reproduce --png`` finds this writer through the ``bpviz.figure_writers`` entry point, so the
engine never imports plotly. Each PNG carries the experiment's title, and a ``--tiny`` one says that it
shows synthetic data, not the paper's result.
"""

from __future__ import annotations

import html
import math
from pathlib import Path

import plotly.graph_objects as go
import plotly.io as pio

from bpviz.html_plot import series_style
from bpviz.reproduce.report import TINY_NOTE, Chart, charts

WIDTH, HEIGHT, SCALE = 720, 440, 2  # CSS pixels, then 2 image pixels each: sharp on a slide


def _plottable(values: list, log: bool) -> list:
    """None (a gap) where a value cannot be drawn: not finite, or not positive on a log axis."""
    return [v if isinstance(v, int | float) and math.isfinite(v) and not (log and v <= 0) else None for v in values]


def figure(chart: Chart, subtitle: list[str]) -> go.Figure:
    """``chart`` drawn by plotly, ``subtitle``'s lines under its title."""
    fig = go.Figure()
    for i, (label, (xs, ys)) in enumerate(chart.series.items()):
        colour, dash = series_style(i)
        fig.add_scatter(
            x=_plottable(list(xs), chart.logx),
            y=_plottable(list(ys), chart.logy),
            name=label,
            mode="lines+markers" if len(xs) < 30 else "lines",
            line={"color": colour, "dash": ",".join(f"{n}px" for n in dash.split()) or "solid"},
        )
    fig.update_layout(
        title={"text": f"{html.escape(chart.title)}<br><sup>{'<br>'.join(map(html.escape, subtitle))}</sup>"},
        template="plotly_white",
        margin={"t": 70 + 18 * len(subtitle), "b": 100 if chart.note else 60},
        legend={"title": {"text": "run"}},
    )
    # 10⁸, not plotly's "100M": a κ or a loss is not a count
    fig.update_xaxes(title_text=chart.xlabel, type="log" if chart.logx else "linear", exponentformat="power")
    fig.update_yaxes(title_text=chart.ylabel, type="log" if chart.logy else "linear", exponentformat="power")
    if chart.note:
        # in pixels below the plot, clear of the axis title whatever the plot's height
        fig.add_annotation(
            text=html.escape(chart.note),
            xref="paper",
            yref="paper",
            x=0,
            y=0,
            xanchor="left",
            yanchor="top",
            yshift=-62,
            showarrow=False,
        )
    return fig


def write_png(result: dict, out: Path) -> list[Path]:
    """Every chart of ``result`` as ``out/figures/NAME.png`` (one browser start for all of them)."""
    subtitle = [result["title"], *([f"--tiny: {TINY_NOTE}"] if result["tiny"] else [])]
    folder = Path(out) / "figures"
    folder.mkdir(parents=True, exist_ok=True)
    figures = charts(result)
    paths = [folder / f"{chart.name}.png" for chart in figures]
    pio.write_images([figure(chart, subtitle) for chart in figures], paths, width=WIDTH, height=HEIGHT, scale=SCALE)
    return paths
