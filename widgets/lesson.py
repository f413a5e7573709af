"""The lesson path (README, "Lesson path") as a guide inside the page, one step at a time.

A student reads what to load, what to do and what to look for in which panel, without switching
between the README and the dashboard. The steps are plain data, so a test can check that every
preset and every panel they name exists; every statement in them comes from the README, the
presets' measured comments, docs/results.md or notebook 02. The guide only asks the app to load a
preset (``on_pick``) and is told which one is loaded (``current``): the app owns the config.
"""

from __future__ import annotations

import html
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import ipywidgets as W

from bpviz.presets import PRESETS

from .controls import tag
from .panels import PANELS


@dataclass(frozen=True)
class LessonStep:
    """One step of the lesson: the preset to load, what to do with it, and what to look for.

    ``look_for`` pairs a panel's title (exactly as in ``panels.PANELS``) with what it should show,
    so the panels a step names are data that can be checked, not words in prose."""

    title: str
    preset: str
    do: str
    look_for: tuple[tuple[str, str], ...]


LOSS, ACCURACY = "loss", "accuracy"
KAPPA, SPECTRUM = "condition number κ of local Hessians", "input-Hessian spectrum now"
SCALES, BOUNDARY = "SA-SGD scale per block", "decision boundary"

LESSON: tuple[LessonStep, ...] = (
    LessonStep(
        "What a network learns: a picture",
        "spirals-linear",
        "Two interleaved spirals, and a network of 3 blocks with no activation: a linear map. Press Start.",
        (
            (BOUNDARY, "One straight cut through the plane, whatever the training does: a linear map cannot bend."),
            (ACCURACY, "It stays near 60 %: a straight line cannot separate the arms."),
        ),
    ),
    LessonStep(
        "A nonlinearity bends the boundary",
        "spirals-relu",
        "The same net with ReLU between the blocks. Press Start; the linear run stays as a grey overlay.",
        (
            (
                BOUNDARY,
                "The regions bend, evaluation by evaluation, until they follow the spiral arms and nearly "
                "every training point sits in its own colour.",
            ),
            (ACCURACY, "0.6 to 0.87 over steps 100-500, past 0.98 by step 900, about 0.99 at the end."),
        ),
    ),
    LessonStep(
        "A deep net that does not learn",
        "deep-tanh-gaussian",
        "A 16-block tanh network with a small Gaussian init (std 0.1). Press Start and let it run.",
        (
            (LOSS, "Flat at about 2.3 (ln 10, chance for 10 classes): nothing is learned."),
            (SPECTRUM, "The eigenvalues spread over decades below 0 (λ < 1); about a third are under 0.1."),
            (KAPPA, "κ is large: no single step size suits every direction, so back-propagation crawls."),
        ),
    ),
    LessonStep(
        "Orthogonal init: eigenvalues near 1",
        "deep-tanh-orthogonal",
        "The same net with an orthogonal init. Press Start. Your first run stays on the plot in grey.",
        (
            (
                SPECTRUM,
                "The eigenvalues gather near 0, that is λ ≈ 1, the ideal. Not exactly: tanh is not "
                "linear, and training moves them.",
            ),
            (KAPPA, "κ is far smaller than the grey mean κ of the Gaussian run."),
            (LOSS, "It falls far below 2.3, while the grey curve of the Gaussian run stays flat."),
        ),
    ),
    LessonStep(
        "Skip connections",
        "deep-tanh-skip",
        "The small Gaussian init again, now with a skip connection around every block. Press Start.",
        (
            (SPECTRUM, "The eigenvalues gather near 0 (λ ≈ 1) again: the identity path keeps them there."),
            (KAPPA, "The input κ (solid) stays far below the grey mean κ of the Gaussian run while it trains."),
            (LOSS, "It falls: the identity path carries the gradient down to the lowest blocks."),
        ),
    ),
    LessonStep(
        "Batch norm: it trains, but not through the input Hessian",
        "deep-tanh-bn",
        "The small Gaussian init again, now with batch norm in every block. Press Start. Its Hessian "
        "reports take longer, so κ and the spectra refresh less often.",
        (
            (LOSS, "It falls: the net trains."),
            (
                KAPPA,
                "The input κ (solid) stays large; in notebook 02 it is even larger than the Gaussian "
                "net's. BN's gain is in the weight Hessian and the signal's scale, not in the input Hessian "
                "(README).",
            ),
        ),
    ),
    LessonStep(
        "A BN network at a large step size",
        "sgd-bn",
        "A CNN of 4 batch-norm ReLU blocks, SGD with momentum at step size 3. Press Start.",
        (
            (LOSS, "It trains, but jumps about."),
            (KAPPA, "Open triangles: for this CNN the input κ are lower bounds (κ ≥ the value shown)."),
            (SCALES, "Empty: plain SGD has no scales. The next step fills it."),
        ),
    ),
    LessonStep(
        "SA-SGD: a step scale per block",
        "sa-sgd-bn",
        "The same CNN and step size with SA-SGD, which gives the weights before each batch norm their "
        "own step scale (σ²/γ²). Press Start; the SGD run stays as a grey overlay.",
        (
            (SCALES, "Each block's factor (1 = plain SGD): how SA-SGD rebalances the blocks' steps."),
            (
                LOSS,
                "No better than the grey SGD curve: this form ended worse than SGD on 4 of 5 measured "
                "seeds. In docs/results.md no SA-SGD variant clearly beats SGD at its best step size.",
            ),
        ),
    ),
    LessonStep(
        "A step too large for SGD",
        "sgd-large-step",
        "A ReLU network of 2 blocks × 128 with plain SGD at step size 3. Press Start.",
        (
            (LOSS, "It falls back to about 2.3, chance: the step is too large."),
            (ACCURACY, "It ends near chance (about 1 in 10)."),
        ),
    ),
    LessonStep(
        "Semi-implicit BP takes the large step",
        "sibp-large-step",
        "The same net and step size with semi-implicit BP (SIBP). Press Start. Each SIBP step solves a "
        "small problem per layer, so the run is slower than SGD's.",
        (
            (
                LOSS,
                "It trains, far below the grey SGD curve: the implicit update tolerates step size 3. "
                "(SIBP's step size is not the same quantity as SGD's: docs/results.md.)",
            ),
            (ACCURACY, "High, where SGD's ended near chance."),
        ),
    ),
)


def check_steps(steps: Sequence[LessonStep]) -> None:
    """Refuse steps that name a preset or a panel the page does not have: the student could not
    follow them."""
    if not steps:
        raise ValueError("a lesson needs at least one step")
    titles = {p.title for p in PANELS}
    for step in steps:
        if step.preset not in PRESETS:
            raise ValueError(f"step {step.title!r}: no preset named {step.preset!r}")
        unknown = [panel for panel, _ in step.look_for if panel not in titles]
        if unknown:
            raise ValueError(f"step {step.title!r}: no panel titled {', '.join(map(repr, unknown))}")


class LessonGuide:
    """The lesson, one step at a time, with Back / Next and a button that loads the step's preset.

    ``on_pick(name)`` asks the app to load a preset; the app calls ``current(name)`` whenever its
    preset changes ("" for custom settings), so the step can say that its preset is loaded."""

    def __init__(self, on_pick: Callable[[str], None], steps: Sequence[LessonStep] = LESSON):
        check_steps(steps)
        self.steps = tuple(steps)
        self._on_pick = on_pick
        self._index = 0
        self._loaded = ""
        self.counter = tag(W.HTML(), "lesson-counter")
        self.title = tag(W.HTML(), "lesson-title")
        self.text = tag(W.HTML(), "lesson-text")
        self.loaded = tag(W.HTML(), "lesson-loaded")
        self.back_btn = tag(W.Button(description="Back", icon="arrow-left", tooltip="the previous step"), "lesson-back")
        self.next_btn = tag(W.Button(description="Next", icon="arrow-right", tooltip="the next step"), "lesson-next")
        self.load_btn = tag(W.Button(button_style="info", layout=W.Layout(width="auto")), "lesson-load")
        self.back_btn.on_click(lambda _: self.show(self._index - 1))
        self.next_btn.on_click(lambda _: self.show(self._index + 1))
        self.load_btn.on_click(lambda _: self._on_pick(self.step.preset))
        self.widget = tag(
            W.VBox(
                [
                    self.counter,
                    self.title,
                    self.load_btn,
                    self.loaded,
                    self.text,
                    W.HBox([self.back_btn, self.next_btn]),
                ],
                layout=W.Layout(border="1px solid #ddd", padding="4px 8px"),
            ),
            "lesson",
        )
        self.show(0)

    @property
    def step_index(self) -> int:
        """The shown step, counted from 0."""
        return self._index

    @property
    def step(self) -> LessonStep:
        return self.steps[self._index]

    def show(self, i: int) -> None:
        """Show step ``i``, clamped to the lesson, so repeated Back or Next presses stop at its ends.

        The buttons stay enabled at the ends: disabling the focused one would drop a keyboard user's
        focus; the counter shows where the lesson ends."""
        self._index = min(max(i, 0), len(self.steps) - 1)
        step = self.step
        self.counter.value = f'<span style="color:#555">Step {self._index + 1} of {len(self.steps)}</span>'
        self.title.value = f"<b>{html.escape(step.title)}</b>"
        self.load_btn.description = f"Load preset {step.preset}"
        self.load_btn.tooltip = f"load the preset {step.preset} (it starts a new run)"
        items = "".join(f"<li><b>{html.escape(panel)}</b>: {html.escape(what)}</li>" for panel, what in step.look_for)
        self.text.value = (
            f'<div>{html.escape(step.do)}</div><div>Look at:</div><ul style="margin:0;padding-left:18px">{items}</ul>'
        )
        self._show_loaded()

    def current(self, preset: str) -> None:
        """The app's preset is now ``preset`` ("" for custom settings)."""
        self._loaded = preset
        self._show_loaded()

    def _show_loaded(self) -> None:
        here = self._loaded == self.step.preset
        self.loaded.value = (
            f'<span style="color:#009E73">✓ {html.escape(self._loaded)} is loaded</span>' if here else ""
        )
