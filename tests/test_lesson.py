"""The lesson guide: its steps name presets and panels that exist, and its buttons walk and load them."""

import pytest

pytest.importorskip("ipywidgets")

from bpviz.widgets.lesson import LESSON, LessonGuide, LessonStep, check_steps  # noqa: E402
from bpviz.widgets.panels import PANELS  # noqa: E402

from bpviz.presets import PRESETS  # noqa: E402


def test_every_step_names_a_preset_and_panels_that_exist():
    titles = {p.title for p in PANELS}
    for step in LESSON:
        assert step.preset in PRESETS, step.title
        assert step.look_for, step.title
        assert {panel for panel, _ in step.look_for} <= titles, step.title
        assert "Start" in step.do, step.title  # every step says what to press


def test_the_lesson_follows_the_readme_order():
    assert [s.preset for s in LESSON] == [
        "spirals-linear",
        "spirals-relu",
        "deep-tanh-gaussian",
        "deep-tanh-orthogonal",
        "deep-tanh-skip",
        "deep-tanh-bn",
        "sgd-bn",
        "sa-sgd-bn",
        "sgd-large-step",
        "sibp-large-step",
    ]


def test_unknown_presets_and_panels_are_refused():
    with pytest.raises(ValueError, match="no preset named 'nope'"):
        check_steps([LessonStep("t", "nope", "press Start", (("loss", "x"),))])
    with pytest.raises(ValueError, match="no panel titled 'losses'"):
        LessonGuide(print, [LessonStep("t", "sgd-bn", "press Start", (("losses", "x"),))])
    with pytest.raises(ValueError):
        LessonGuide(print, ())


def test_next_and_back_move_and_stop_at_the_ends():
    guide = LessonGuide(lambda name: None)
    n = len(LESSON)
    assert guide.step_index == 0 and f"Step 1 of {n}" in guide.counter.value
    guide.back_btn.click()
    assert guide.step_index == 0
    guide.next_btn.click()
    assert guide.step_index == 1 and f"Step 2 of {n}" in guide.counter.value
    assert LESSON[1].title in guide.title.value
    for _ in range(n + 2):
        guide.next_btn.click()
    assert guide.step_index == n - 1 and f"Step {n} of {n}" in guide.counter.value
    guide.back_btn.click()
    assert guide.step_index == n - 2
    guide.show(-5)
    assert guide.step_index == 0
    guide.show(99)
    assert guide.step_index == n - 1


def test_the_step_text_names_its_panels():
    guide = LessonGuide(lambda name: None)
    for i, step in enumerate(LESSON):
        guide.show(i)
        for panel, _ in step.look_for:
            assert f"<b>{panel}</b>" in guide.text.value


def test_load_asks_for_the_steps_preset_and_current_marks_it_loaded():
    picked = []
    guide = LessonGuide(picked.append)
    guide.show(3)
    assert guide.load_btn.description == f"Load preset {LESSON[3].preset}"
    guide.load_btn.click()
    assert picked == [LESSON[3].preset]
    assert guide.loaded.value == ""  # loaded only once the app says so
    guide.current(LESSON[3].preset)
    assert "is loaded" in guide.loaded.value
    guide.next_btn.click()
    assert guide.loaded.value == ""  # another step, another preset
    guide.back_btn.click()
    assert "is loaded" in guide.loaded.value
    guide.current("")  # the settings were edited: custom
    assert guide.loaded.value == ""


def test_the_widget_and_its_buttons_carry_the_classes_the_page_uses():
    guide = LessonGuide(lambda name: None)
    assert "bpviz-lesson" in guide.widget._dom_classes
    for button, name in ((guide.back_btn, "back"), (guide.next_btn, "next"), (guide.load_btn, "load")):
        assert f"bpviz-lesson-{name}" in button._dom_classes
