"""Headless widget tests (no kernel, no browser): wiring, presets, URL round trip, buttons."""

import html
import json
import time

import numpy as np
import pytest

pytest.importorskip("ipywidgets")
pytest.importorskip("plotly")

from bpviz.widgets.app import Dashboard  # noqa: E402
from bpviz.widgets.overlays import describe_run  # noqa: E402
from bpviz.widgets.panel_widget import shown_blocks  # noqa: E402
from bpviz.widgets.panels import PALETTE  # noqa: E402
from waiting import wait_for  # noqa: E402

from bpviz.config import RunConfig  # noqa: E402
from bpviz.presets import PRESETS  # noqa: E402


@pytest.fixture
def app(tmp_path):
    apps = []

    def make(query=""):
        a = Dashboard(query=query, runs_dir=tmp_path / "runs")
        apps.append(a)
        return a

    yield make
    for a in apps:
        a.close()


class _Missing:
    y = ()


def trace(app, name):
    """The named trace, or an empty stand-in while the app thread is rebuilding the figure."""
    return next((t for t in app.figure.data if t.name == name), _Missing)


def test_url_query_sets_the_controls_and_nonsense_is_reported(app):
    a = app("depth=3&batch_norm=true&lr=0.3")
    assert a.controls["depth"].value == 3 and a.controls["batch_norm"].value is True
    assert a.controls["lr"].value == pytest.approx(0.3)
    assert a.share.value.startswith("?") and "depth=3" in a.share.value and "batch_norm=true" in a.share.value
    assert app("hessian_every=37").controls["hessian_every"].value == 37  # any valid cadence, not only the menu's
    b = app("depth=abc&nonsense=1&data_dir=/etc")
    assert b.controls["depth"].value == RunConfig().depth
    assert "depth=abc" in b.message.value and "nonsense" in b.message.value
    assert "data_dir" in b.message.value and b.session.cfg.data_dir is None  # the page cannot point at files


def test_start_trains_on_a_worker_and_the_figure_fills(app):
    a = app("dataset=xor&depth=3&width=8&steps=100000")
    a.start_btn.click()
    assert wait_for(lambda: len(trace(a, "batch loss").y) > 5)
    assert wait_for(lambda: len(trace(a, "κ input · block 1").y) > 0)
    assert wait_for(lambda: "running" in a.status.value)
    a.pause_btn.click()
    assert wait_for(lambda: a.session.state.value == "paused" and a.pause_btn.description == "Resume")
    a.pause_btn.click()
    assert wait_for(lambda: a.session.state.value == "running")
    assert wait_for(lambda: "train_accuracy" in a.session.snapshot()["history"])  # an evaluation before Stop
    a.stop_btn.click()
    assert wait_for(lambda: a.session.state.value == "finished")
    # both accuracies are drawn, each from its own series in the session's history
    hist = a.session.snapshot()["history"]
    assert wait_for(lambda: len(trace(a, "train accuracy").y) == len(hist["train_accuracy"]["value"]) > 0)
    for split in ("train", "test"):
        assert list(trace(a, f"{split} accuracy").y) == pytest.approx(hist[f"{split}_accuracy"]["value"], abs=1e-6)


def test_the_page_says_which_samples_the_local_hessians_use_and_marks_bounds(app):
    a = app("dataset=xor&depth=3&width=8&steps=100000")  # no BN: exact, on a training batch's worth
    assert "first 64 training samples; the training batch size. Every κ of this run is exact." in a.hessian_note.value
    # a BN CNN's input Hessians (16 channels x 8 x 8 per sample) are too large to solve live
    b = app("dataset=digits&arch=cnn&depth=2&width=16&batch_norm=true&batch_size=128&steps=100000")
    assert (
        "first 32 training samples (batch norm&#x27;s statistics over these); training batches have 128"
        in b.hessian_note.value
    )
    b.start_btn.click()
    assert wait_for(lambda: len(trace(b, "κ input · block 1").y) > 0, timeout=60)
    kappa = trace(b, "κ input · block 1")
    assert set(kappa.marker.symbol) == {"triangle-up-open"} and set(kappa.text) == {"κ ≥"}  # never exact
    assert "%{text}" in kappa.hovertemplate
    assert trace(b, "κ weight · block 1").marker.symbol is None  # the weight Hessians stay exact
    assert "△ κ ≥: lower bounds (input κ of blocks 0, 1: the exact spectrum is too large" in b.hessian_note.value
    assert "cond_lower_bound/input/1" in b.session.snapshot()["history"]
    assert "cond/input/1" not in b.session.snapshot()["history"]
    assert wait_for(lambda: "estimate" in trace(b, "spectrum input · block 1").hovertemplate)
    b.stop_btn.click()


def test_a_kappa_the_zero_floor_cut_is_drawn_as_a_bound_with_its_reason(app):
    """spirals-relu's weight spectra go on below the report's zero floor from the first report
    (blocks 1 and 2): recorded as cond_lower_bound/, drawn as open triangles, and the note says why."""
    a = app()
    a.preset.value = "spirals-relu"
    assert wait_for(lambda: a.session.cfg.name == "spirals-relu" and not a.start_btn.disabled, timeout=30)
    a.start_btn.click()
    assert wait_for(lambda: "cond_lower_bound/weight/1" in a.session.snapshot()["history"], timeout=60)
    assert wait_for(lambda: len(trace(a, "κ weight · block 1").y) > 0)
    kappa = trace(a, "κ weight · block 1")
    assert "triangle-up-open" in kappa.marker.symbol and "κ ≥" in kappa.text
    assert wait_for(lambda: "weight κ of block" in a.hessian_note.value)
    assert "the spectrum goes on below 1e-9 λmax, where the report counts eigenvalues as zero" in a.hessian_note.value
    a.stop_btn.click()


def test_a_kappa_that_is_exact_at_one_report_and_a_bound_at_the_next_draws_both():
    from bpviz.widgets.figure import Figure
    from bpviz.widgets.overlays import Overlays

    from bpviz.session import TrainingSession

    figure = Figure()
    figure.new_run(TrainingSession(RunConfig(depth=2, width=4, dataset="xor")), Overlays())  # never started
    history = {
        "cond/weight/0": {"step": [0, 20, 40], "value": [5.0, 6.0, 7.0]},
        "cond/weight/1": {"step": [0, 40], "value": [10.0, 30.0]},
        "cond_lower_bound/weight/1": {"step": [20], "value": [2e8]},
    }
    stats = [{"block": 1, "wrt": "weight", "method": "exact", "below_floor": 3}]
    figure.draw({"step": 40, "history": history}, {"step": 40, "hist_edges": [0.0, 1.0], "stats": stats})
    kappa = next(t for t in figure.data if t.name == "κ weight · block 1")
    assert list(kappa.x) == [0, 20, 40] and list(kappa.y) == pytest.approx([10.0, 2e8, 30.0])
    # only the bound at step 20 is a triangle and says "κ ≥" in the hover; the exact values say "κ ="
    assert kappa.marker.symbol == ("circle", "triangle-up-open", "circle")
    assert kappa.text == ("κ =", "κ ≥", "κ =") and "%{text} %{y:.4g}" in kappa.hovertemplate
    exact = next(t for t in figure.data if t.name == "κ weight · block 0")
    assert list(exact.y) == pytest.approx([5.0, 6.0, 7.0]) and exact.marker.symbol is None
    assert "△ κ ≥: lower bounds (weight κ of block 1: the spectrum goes on below 1e-9 λmax" in figure.note.value


def test_a_long_kappa_trace_keeps_its_bounds_marked():
    """Past MARKERS_BELOW points a trace is drawn as a bare line, but its lower bounds stay triangles."""
    from bpviz.widgets.figure import MARKERS_BELOW, Figure
    from bpviz.widgets.overlays import Overlays

    from bpviz.session import TrainingSession

    figure = Figure()
    figure.new_run(TrainingSession(RunConfig(depth=2, width=4, dataset="xor")), Overlays())
    steps = list(range(0, 10 * (MARKERS_BELOW + 10), 10))
    cut = set(steps[5::7])  # the reports whose spectrum went on below the zero floor
    history = {
        "cond/weight/0": {"step": steps, "value": [2.0] * len(steps)},
        "cond/weight/1": {"step": [s for s in steps if s not in cut], "value": [3.0] * (len(steps) - len(cut))},
        "cond_lower_bound/weight/1": {"step": sorted(cut), "value": [4e8] * len(cut)},
    }
    figure.draw({"step": steps[-1], "history": history}, None)
    kappa = next(t for t in figure.data if t.name == "κ weight · block 1")
    assert kappa.mode == "lines+markers" and list(kappa.x) == steps
    triangles = [x for x, s in zip(kappa.x, kappa.marker.symbol) if s == "triangle-up-open"]
    assert triangles == sorted(cut) and list(kappa.y[np.isin(kappa.x, triangles)]) == pytest.approx([4e8] * len(cut))
    assert all(size == 0 for size, s in zip(kappa.marker.size, kappa.marker.symbol) if s == "circle")
    exact = next(t for t in figure.data if t.name == "κ weight · block 0")
    assert exact.mode == "lines"  # a long exact trace: no markers


def test_an_earlier_runs_mean_kappa_is_over_every_block_and_a_bound_where_one_of_them_was():
    """The grey "κ input · mean" of a kept run: the geometric mean over all blocks at each report,
    counting a block whose κ was only bounded (Lanczos; the zero floor), and marked a bound there."""
    from types import SimpleNamespace

    from bpviz.widgets.figure import Figure
    from bpviz.widgets.overlays import KAPPA_MEAN, Overlays

    from bpviz.session import TrainingSession

    history = {
        "batch_loss": {"step": [10, 20], "value": [1.0, 0.5]},
        "cond/input/0": {"step": [0, 10, 20, 30], "value": [4.0, 9.0, 16.0, 25.0]},
        "cond/input/1": {"step": [0, 20], "value": [1.0, 4.0]},  # a bound at 10 and 30
        "cond_lower_bound/input/1": {"step": [10, 30], "value": [1e6, 9.0]},
        "cond_lower_bound/input/2": {"step": [0, 10, 20, 30], "value": [16.0, 1.0, 1.0, 1.0]},  # always a bound
    }
    overlays = Overlays()
    overlays.new_run(RunConfig(depth=3, width=4))
    overlays.keep(
        SimpleNamespace(
            step=30, cfg=RunConfig(depth=3, width=4), report=None, history=SimpleNamespace(snapshot=lambda: history)
        )
    )
    [kept] = overlays.items
    x, y = kept.series[KAPPA_MEAN]
    cube_root = [(4 * 1 * 16) ** (1 / 3), (9 * 1e6 * 1) ** (1 / 3), (16 * 4 * 1) ** (1 / 3), (25 * 9 * 1) ** (1 / 3)]
    assert list(x) == [0, 10, 20, 30] and list(y) == pytest.approx(cube_root, rel=1e-6)
    assert list(kept.bounds[KAPPA_MEAN]) == [True, True, True, True]  # block 2 was only ever bounded
    del history["cond_lower_bound/input/2"]
    overlays.new_run(RunConfig(depth=2, width=4))
    overlays.keep(
        SimpleNamespace(
            step=30, cfg=RunConfig(depth=2, width=4), report=None, history=SimpleNamespace(snapshot=lambda: history)
        )
    )
    x, y = overlays.items[1].series[KAPPA_MEAN]
    assert list(y) == pytest.approx([2.0, 3e3, 8.0, 15.0], rel=1e-6)
    assert list(overlays.items[1].bounds[KAPPA_MEAN]) == [False, True, False, True]
    figure = Figure()
    figure.new_run(TrainingSession(RunConfig(depth=2, width=4, dataset="xor")), overlays)
    mean = next(t for t in figure.data if t.name == f"{overlays.items[1].label} · {KAPPA_MEAN}")
    assert mean.marker.symbol == ("circle", "triangle-up-open", "circle", "triangle-up-open")
    assert mean.text == ("κ =", "κ ≥", "κ =", "κ ≥") and "%{text}" in mean.hovertemplate
    note = "Every κ of this run is exact. △ on a grey line: an earlier run&#x27;s mean κ, a lower bound"
    assert note in figure.note.value
    overlays.list.value = ()  # hidden, the earlier runs' bounds are not spoken of
    figure.show_overlays(overlays)
    assert "grey line" not in figure.note.value


def test_spectrum_hovers_read_log10_lambda_and_an_estimate_says_so():
    from types import SimpleNamespace

    from bpviz.widgets.figure import Figure
    from bpviz.widgets.overlays import Overlays

    from bpviz.session import TrainingSession

    stats = [
        {"block": 0, "wrt": "input", "method": "exact", "hist_counts": [1.0, 2.0]},
        {"block": 1, "wrt": "input", "method": "lanczos", "hist_counts": [0.5, 3.0]},
    ]
    report = {"step": 5, "hist_edges": [-1.0, 0.0, 1.0], "stats": stats}
    overlays = Overlays()
    overlays.new_run(RunConfig(depth=2, width=4))
    history = {"batch_loss": {"step": [5], "value": [1.0]}}
    overlays.keep(
        SimpleNamespace(
            step=5, cfg=RunConfig(depth=2, width=4), report=report, history=SimpleNamespace(snapshot=lambda: history)
        )
    )
    figure = Figure()
    figure.new_run(TrainingSession(RunConfig(depth=2, width=4, dataset="xor")), overlays)
    kept = next(t for t in figure.data if t.name.endswith("· spectrum input · all blocks"))
    assert list(kept.x) == [-0.5, 0.5] and list(kept.y) == [1.5, 5.0]
    assert "log10 λ %{x:.2f}" in kept.hovertemplate and "estimate" in kept.hovertemplate
    current = next(t for t in figure.data if t.name == "spectrum input · block 0")
    assert "log10 λ" in current.hovertemplate and "step" not in current.hovertemplate


def test_step_size_changes_take_effect_while_running(app):
    a = app("dataset=xor&depth=2&width=8&steps=1000000")
    a.start_btn.click()
    assert wait_for(lambda: a.session.step > 10)
    a.controls["lr"].value = 0.001
    assert wait_for(lambda: a.session.trainer.algorithm.lr == pytest.approx(0.001))
    assert wait_for(lambda: "lr 1.00e-03" in a.status.value)
    assert a.session.state.value == "running"  # the step size does not reset the run


def test_architecture_change_resets_and_keeps_the_old_run_as_an_overlay(app):
    a = app("dataset=xor&depth=3&width=8&steps=1000000")
    a.start_btn.click()
    assert wait_for(lambda: a.session.step > 50)
    first = a.session
    a.controls["batch_norm"].value = True
    assert wait_for(lambda: a.session is not first and a.session.state.value == "idle")
    # the old worker leaves after the step or report it is computing: the new run does not wait for it
    assert a.session.cfg.batch_norm and first.wait(5) and first.state.value == "finished"
    # labelled by what it was, not by what differs: the run number and its settings that differ
    assert [o.label for o in a.overlays.items] == ["run 1: no BN, lr 0.05"]
    assert wait_for(lambda: len(trace(a, "run 1: no BN, lr 0.05 · batch loss").y) > 0)
    # the key follows the traces on the same thread: wait for it too
    assert wait_for(lambda: "run 2 (now): BN, lr 0.05" in a.figure.key.value)
    assert "run 1: no BN, lr 0.05" in a.figure.key.value
    a.compare.clear_btn.click()
    assert wait_for(
        lambda: a.overlays.list.options == () and not any(t.name.startswith("run 1") for t in a.figure.data)
    )


def test_presets_menu_loads_a_preset(app):
    a = app()
    a.preset.value = "deep-tanh-orthogonal"
    assert wait_for(lambda: a.session.cfg.init == "orthogonal" and a.controls["init"].value == "orthogonal")
    assert a.session.cfg.depth == PRESETS["deep-tanh-orthogonal"].depth


def test_divergence_shows_a_message_and_the_app_keeps_working(app):
    a = app("dataset=xor&depth=3&width=32&activation=relu&init=kaiming&lr=10&steps=100000")
    a.controls["lr"].value = 10.0
    a.start_btn.click()
    assert wait_for(lambda: a.session.state.value == "diverged")
    assert wait_for(lambda: "Run diverged" in a.message.value)
    step = a.session.diverged_at

    def marks():
        loss = a.figure.widgets["loss"].layout
        return [a for a in loss.annotations if a.name == "mark"], list(loss.shapes)

    assert wait_for(lambda: len(marks()[0]) == 1)
    (label,), (line,) = marks()
    assert label.text == f"diverged at step {step}" and line.x0 == line.x1 == step
    a.controls["lr"].value = 0.01
    a.reset_btn.click()
    a.start_btn.click()
    assert wait_for(lambda: a.session.state.value == "running" and a.session.step > 20)
    assert marks() == ([], [])  # the new run has no mark


def test_json_settings_apply_and_bad_json_is_reported(app):
    a = app()
    a.json.value = RunConfig(dataset="circles", depth=5, data_dir="/etc").to_json()
    a.load_json_btn.click()
    assert wait_for(lambda: a.session.cfg.depth == 5 and a.controls["dataset"].value == "circles")
    assert wait_for(lambda: "data_dir" in a.message.value) and a.session.cfg.data_dir is None
    a.json.value = '{"depth": "deep"}'
    a.load_json_btn.click()
    assert wait_for(lambda: "settings not applied" in a.message.value and "depth" in a.message.value)


def test_one_figure_for_all_runs_and_bounded_updates(app):
    a = app("dataset=xor&depth=40&width=4&steps=1000000")
    figures = a.figure.widgets.copy()
    assert len(shown_blocks(40)) == 8
    a.reset_btn.click()
    a.start_btn.click()
    assert wait_for(lambda: len(trace(a, "batch loss").y) > 0)
    assert a.figure.widgets == figures  # the same figure objects for every run
    assert all(len(t.y) <= 200 for t in a.figure.data if t.type == "scatter" and t.name != "training points")

    # xor is 2-D: its decision boundary, a bounded grid of the predicted class
    def grid():
        z = getattr(trace(a, "decision boundary"), "z", None)
        return None if z is None else np.shape(z)

    assert wait_for(lambda: grid() == (48, 48))
    assert all(len(row) == 48 for row in trace(a, "decision boundary").z)
    # placed on the plane the engine evaluated, with the training points coloured by their class
    sent = a.session.snapshot()["boundary"]
    heatmap, points = trace(a, "decision boundary"), trace(a, "training points")
    cells = heatmap.x0 + heatmap.dx * np.arange(48), heatmap.y0 + heatmap.dy * np.arange(48)
    assert np.allclose(cells[0], sent["x"], atol=1e-4) and np.allclose(cells[1], sent["y"], atol=1e-4)
    assert np.allclose(points.x, sent["points"]["x"], atol=1e-6) and 0 < len(points.x) <= 300
    assert [PALETTE.index(c) for c in points.marker.color] == list(points.customdata) == sent["points"]["label"]

    # sent once a run, so kept in the state a page that connects later starts from
    def kept_state() -> dict:
        return {t["name"]: t for t in a.figure.widgets["decision boundary"]._widget_data}

    # the widget's own copy follows the update from the publishing thread (a race seen once in a full run)
    assert wait_for(lambda: "x0" in kept_state().get("decision boundary", {}))
    kept = kept_state()
    assert kept["decision boundary"]["x0"] == heatmap.x0 and len(kept["training points"]["x"]) == len(points.x)


def test_labels_say_what_a_run_was_in_every_setting_the_runs_differ_in():
    gaussian, orthogonal = RunConfig(init="gaussian", lr=0.1), RunConfig(init="orthogonal", batch_norm=True, lr=0.1)
    assert describe_run(gaussian, [], [gaussian, orthogonal]) == "gaussian init (std 0.1), no BN, lr 0.1"
    assert describe_run(orthogonal, [], [gaussian, orthogonal]) == "orthogonal init, BN, lr 0.1"
    # the step sizes it really used (its "lr" series), whatever its config started with
    assert describe_run(gaussian, [0.1, 0.1, 10.0], [gaussian]) == "lr 0.1→10"
    assert describe_run(gaussian, [0.3, 1.0, 0.3], [gaussian]) == "lr 0.3→…→0.3"


def test_overlay_labels_are_absolute_and_follow_the_set_of_runs():
    from types import SimpleNamespace

    from bpviz.widgets.overlays import Overlays

    def run(cfg, history):
        return SimpleNamespace(step=20, cfg=cfg, report=None, history=SimpleNamespace(snapshot=lambda: history))

    loss = {"batch_loss": {"step": [10, 20], "value": [1.0, 0.5]}}
    overlays = Overlays()
    overlays.new_run(RunConfig(lr=0.3))
    overlays.keep(run(RunConfig(lr=0.3), loss))  # no "lr" series: the config's step size
    overlays.new_run(RunConfig(lr=0.3, skip=True))
    overlays.keep(run(RunConfig(lr=0.3, skip=True), {**loss, "lr": {"step": [0, 15], "value": [0.3, 10.0]}}))
    overlays.new_run(RunConfig(lr=0.3, batch_norm=True))
    assert [o.label for o in overlays.items] == ["run 1: no BN, no skip, lr 0.3", "run 2: no BN, skip, lr 0.3→10"]
    assert overlays.current_label() == "run 3 (now): BN, no skip, lr 0.3"
    assert list(overlays.items[1].series["batch loss"][1]) == [1.0, 0.5]
    overlays.remove({overlays.items[1].label})  # the labels are made afresh: skip no longer differs
    assert [o.label for o in overlays.items] == ["run 1: no BN, lr 0.3"]


def test_controls_are_generated_from_the_configs_fields(monkeypatch):
    import dataclasses
    import typing

    import ipywidgets as W
    from bpviz.widgets import controls

    fields = {f.name: f for f in dataclasses.fields(RunConfig)}
    hints = typing.get_type_hints(RunConfig)
    form = controls.ConfigControls(RunConfig(), on_edit=lambda *a: None, on_option=lambda *a: None)
    w = form.widgets
    assert (
        (w["width"].min, w["width"].max)
        == (fields["width"].metadata["lo"], fields["width"].metadata["hi"])
        == (1, 4096)
    )
    assert (w["depth"].min, w["depth"].max) == (1, 100) and w["n_train"].min == 1
    literals = [n for n in w if typing.get_origin(hints[n]) is typing.Literal]
    assert {"dataset", "arch", "activation", "init", "bias_init", "dtype"} <= set(literals)
    for name in literals:
        unavailable = controls.UNAVAILABLE.get(name, ())
        assert tuple(w[name].options) == tuple(c for c in typing.get_args(hints[name]) if c not in unavailable)
    assert all(isinstance(w[n], W.Checkbox) for n in w if hints[n] is bool) and "batch_norm" in w
    assert isinstance(w["lr"], W.FloatLogSlider)  # an override
    assert not set(w) & set(controls.SERVER_ONLY + controls.WITHOUT_CONTROL)
    assert set(w) | set(controls.SERVER_ONLY + controls.WITHOUT_CONTROL) == set(fields)
    monkeypatch.setattr(controls, "SERVER_ONLY", controls.SERVER_ONLY + ("seed",))
    form = controls.ConfigControls(RunConfig(), on_edit=lambda *a: None, on_option=lambda *a: None)
    assert "seed" not in form.widgets  # a field the page may not set gets no control


def test_the_state_is_the_config_and_the_controls_show_it(app):
    a = app("dataset=xor&depth=3&width=8")
    assert a.cfg.depth == 3 and a.session.cfg is a.cfg
    a.form.show(a.cfg.replace(width=7))  # the width box shows 7, but no one edited the settings
    a.controls["depth"].value = 5
    assert wait_for(lambda: a.cfg.depth == 5 and a.session.cfg is a.cfg)
    assert "depth=5" in a.share.value and '"depth": 5' in a.json.value
    assert a.cfg.width == 8 and a.controls["width"].value == 8  # not read back from the controls
    a.controls["lr"].value = 0.2  # a live setting: the same run, a new state
    assert wait_for(lambda: a.cfg.lr == 0.2 and "lr=0.2" in a.share.value)
    assert a.session.lr == 0.2 and a.session.cfg.depth == 5
    a.controls["arch"].value = "cnn"  # refused (no image dataset): the message names the field
    assert wait_for(lambda: "arch" in a.message.value and a.controls["arch"].value == "mlp")
    assert a.cfg.arch == "mlp"


def test_optimizer_options_follow_the_optimizer_and_reach_the_run(app):
    a = app(RunConfig(optimizer="sibp", optimizer_options={"lam": 2.0}).to_query())
    assert set(a.option_widgets) == {
        "solver",
        "lam",
        "fr_iters",
        "armijo_rho",
        "armijo_sigma",
        "inner_iters",
        "cg_iters",
    }
    assert a.option_widgets["lam"].value == 2.0 and a.session.cfg.optimizer_options == {"lam": 2.0}
    a.controls["optimizer"].value = "sgd"
    assert wait_for(lambda: a.session.cfg.optimizer == "sgd" and "momentum" in a.option_widgets)
    assert a.session.cfg.optimizer_options == {}  # the new algorithm starts from its defaults
    a.option_widgets["momentum"].value = 0.9
    assert wait_for(lambda: a.session.cfg.optimizer_options == {"momentum": 0.9})
    assert wait_for(lambda: RunConfig.from_query(a.share.value)[0].optimizer_options == {"momentum": 0.9})
    a.option_widgets["momentum"].value = 1.5  # out of range: refused, the message names the option
    assert wait_for(lambda: "momentum" in a.message.value and "allowed" in a.message.value)
    assert a.session.cfg.optimizer_options == {"momentum": 0.9}


def test_a_run_shows_the_panels_meant_for_it_and_a_view_shows_one_alone(app):
    def shown(a):
        return {p.title for p in a.figure._panels}

    a = app("dataset=xor&depth=2&width=8")
    assert "SA-SGD scale per block" not in shown(a) and "decision boundary" in shown(a)  # xor is 2-D
    a.controls["optimizer"].value = "sa_sgd"
    assert wait_for(lambda: a.session.cfg.optimizer == "sa_sgd" and "SA-SGD scale per block" in shown(a))
    a.start_btn.click()
    assert wait_for(lambda: len(trace(a, "scale · block 1").y) > 0)  # the scales it announced
    a.view.value = "loss"
    assert wait_for(lambda: shown(a) == {"loss"} and "view=loss" in a.share.value)
    assert a.figure.box.children == (a.figure.widgets["loss"],) and a.figure.box.layout.grid_template_columns == "1fr"
    assert a.figure.widgets["loss"].layout.height == 780  # alone, it takes the whole figure's height
    assert wait_for(lambda: len(trace(a, "batch loss").y) > 0)


def test_preset_with_options_shows_them(app):
    name = next(n for n, p in PRESETS.items() if p.optimizer_options)
    a = app()
    a.preset.value = name
    assert wait_for(lambda: a.session.cfg.optimizer_options == PRESETS[name].optimizer_options)
    assert all(a.option_widgets[k].value == v for k, v in PRESETS[name].optimizer_options.items())


def test_a_page_that_connects_later_gets_the_current_traces(app):
    """Voila renders the figure after the notebook ran: its initial state must hold the traces."""
    a = app("dataset=xor&depth=3&width=8")
    names = [t["name"] for w in a.figure.shown() for t in w._widget_data]
    assert names == [t.name for t in a.figure.data] and "κ input · block 1" in names


def test_short_runs_show_markers_and_the_link_rounds_the_step_size(app):
    a = app("dataset=xor&depth=2&width=8&steps=10&lr=0.05")
    a.start_btn.click()
    assert wait_for(lambda: a.session.state.value == "finished" and len(trace(a, "batch loss").y) > 0)
    assert wait_for(lambda: trace(a, "batch loss").mode == "lines+markers")
    a.controls["lr"].value = 10**-1.5
    assert wait_for(lambda: "lr=0.0316&" in a.share.value + "&")


def test_heartbeat_loss_stops_the_run_and_says_why(app):
    a = app("dataset=xor&depth=2&width=8&steps=1000000")
    a.heartbeat.timeout = 0.5
    a.start_btn.click()
    assert wait_for(lambda: a.session.state.value == "running")
    a.heartbeat.last = time.monotonic() - 1.0  # the page ticked, then stopped ticking
    assert wait_for(lambda: a.session.state.value == "finished")
    assert wait_for(lambda: "no heartbeat" in a.message.value)


def test_an_update_made_while_a_page_message_is_applied_reaches_the_page():
    """Applying a page message holds trait notifications, and traitlets merges what changes
    meanwhile: plotly's "_py2js_update = message; = None" would reach the page as None."""
    import threading
    from contextlib import contextmanager

    import plotly.graph_objects as go
    from bpviz.widgets.panel_widget import LockedFigureWidget

    class Comm:
        kernel = object()
        comm_id = "test"
        sent: list = []

        def send(self, data=None, buffers=None, **_):
            self.sent.append(data)

        def on_msg(self, callback):
            pass

        def close(self, *_, **__):
            pass

    w = LockedFigureWidget(go.Figure(go.Scatter(x=[0], y=[1], name="a")))
    w.comm = Comm()
    applying = threading.Event()
    hold = w.hold_trait_notifications

    @contextmanager
    def slow_hold():  # a page message whose application takes a while
        with hold():
            applying.set()
            time.sleep(0.3)
            yield

    object.__setattr__(w, "hold_trait_notifications", slow_hold)
    page = threading.Thread(target=w.set_state, args=({"_js2py_relayout": None},))
    page.start()
    assert applying.wait(5)
    with w.changing(), w.batch_update():  # what the app thread does
        w.data[0].y = [7.0]
    page.join()
    updates = [
        m["state"]["_py2js_update"]
        for m in Comm.sent
        if m.get("method") == "update" and m["state"].get("_py2js_update")
    ]
    assert updates and updates[-1]["style_data"]["y"] == [[7.0]]


def test_page_flow_holds_updates_the_page_has_not_taken():
    from bpviz.widgets.flow import PageFlow

    flow = PageFlow(in_flight=2, timeout=0.5)
    flow.sent(), flow.sent(), flow.sent()
    assert flow.ready()  # no page has answered: nothing to wait for
    flow.pong.value = flow.ping.value  # the page's link starts and copies ping
    flow.sent()
    assert flow.ready()  # one on its way
    flow.sent()
    assert not flow.ready()  # two on their way
    flow.pong.value += 1
    assert flow.ready()
    flow.sent()
    assert not flow.ready()
    time.sleep(0.6)
    assert flow.ready()  # an answer that never comes holds updates back only so long


def test_a_page_that_lags_gets_no_new_figure_updates_but_the_status_goes_on(app):
    a = app("dataset=xor&depth=2&width=4&steps=1000000")
    a.flow.timeout = 60.0
    a.flow.pong.value = a.flow.ping.value  # a page is there, and up to date
    a.start_btn.click()
    assert wait_for(lambda: a.flow.ping.value - a.flow.pong.value >= a.flow.in_flight)
    held_at, points = a.flow.ping.value, len(trace(a, "batch loss").y)

    def step_shown() -> int:
        return int(a.status.value.split("step ")[1].split()[0])

    step = step_shown()
    assert wait_for(lambda: step_shown() > step + 100)
    assert a.flow.ping.value == held_at and len(trace(a, "batch loss").y) == points
    a.flow.pong.value = a.flow.ping.value  # the page caught up
    assert wait_for(lambda: a.flow.ping.value > held_at)


def test_a_preheated_kernel_warms_up_then_builds_the_app_for_the_page_that_arrives(monkeypatch, tmp_path):
    """In a preheated Voila kernel the URL query is known only after wait_for_request(): the app
    must be built after it (and the warm-up before it), or every link would open with defaults."""
    import bpviz.widgets.launch as app_module
    import voila.utils

    calls = []
    monkeypatch.setenv("VOILA_PREHEAT", "True")
    monkeypatch.delenv("QUERY_STRING", raising=False)
    monkeypatch.setattr(app_module, "warm_up", lambda: calls.append("warm_up"))

    def page_arrives():
        calls.append("wait_for_request")
        monkeypatch.setenv("QUERY_STRING", "depth=3&batch_norm=true")

    monkeypatch.setattr(voila.utils, "wait_for_request", page_arrives)
    monkeypatch.setattr("IPython.display.display", lambda *a, **k: calls.append("display"))
    a = app_module.launch(runs_dir=tmp_path / "runs")
    try:
        assert calls == ["warm_up", "wait_for_request", "display"]
        assert a.controls["depth"].value == 3 and a.session.cfg.batch_norm is True
    finally:
        a.close()
    monkeypatch.setenv("VOILA_PREHEAT", "False")  # JupyterLab, or Voila without preheating
    calls.clear()
    b = app_module.launch(runs_dir=tmp_path / "runs")
    b.close()
    assert calls == ["display"]


def test_warm_up_trains_and_leaves_no_widgets_and_no_files(monkeypatch, tmp_path):
    """Every widget a kernel holds is sent to its page, so the warm-up must create none; and it
    writes no run."""
    from bpviz.widgets.launch import warm_up
    from ipywidgets.widgets.widget import _instances

    import bpviz.session

    sessions = []
    real = bpviz.session.TrainingSession.start

    def start(self):
        sessions.append(self)
        real(self)

    monkeypatch.setattr(bpviz.session.TrainingSession, "start", start)
    monkeypatch.chdir(tmp_path)
    before = set(_instances)
    warm_up()
    assert set(_instances) == before
    assert list(tmp_path.iterdir()) == []
    (s,) = sessions
    assert s.state.value == "finished" and s.step == 30 and s.report is not None


def test_a_saved_run_resumes_from_its_checkpoint_in_the_page(app):
    a = app("dataset=xor&depth=2&width=8&steps=120&lr=0.05")
    a.start_btn.click()
    assert wait_for(lambda: a.session.state.value == "finished", timeout=60)
    first = a.session.writer.path.name
    assert wait_for(lambda: any(v == first for _, v in a.compare.saved_runs.options))
    label = next(text for text, v in a.compare.saved_runs.options if v == first)
    assert "finished, lr 0.05" in label
    a.compare.saved_runs.value = first
    a.compare.resume_btn.click()
    assert wait_for(lambda: a.session.step == 120 and a.session.cfg.steps == 240)
    assert wait_for(lambda: "resumed" in a.message.value and "at step 120" in a.message.value)
    a.start_btn.click()
    assert wait_for(lambda: a.session.state.value == "finished" and a.session.step == 240, timeout=60)


def test_a_saved_run_shown_again_has_the_series_of_the_run_kept_from_the_page(app):
    """Loss, test accuracy and the mean κ (bounds marked) from the saved records equal what the
    page kept of the same run when it was replaced."""
    from bpviz.widgets.overlays import KAPPA_MEAN, session_series

    a = app("dataset=xor&depth=2&width=8&steps=120")
    a.start_btn.click()
    assert wait_for(lambda: a.session.state.value == "finished", timeout=60)
    kept, kept_bounds = session_series(a.session.history.snapshot())
    run_id = a.session.writer.path.name
    a.overlays.add_saved(a.runs_dir, run_id)
    [saved] = [o for o in a.overlays.items if o.run_id == run_id]
    assert set(saved.series) == set(kept) == {"batch loss", "test accuracy", KAPPA_MEAN}
    for key, (x, y) in kept.items():
        assert list(saved.series[key][0]) == list(x) and list(saved.series[key][1]) == pytest.approx(list(y))
    assert [list(b) for b in saved.bounds.values()] == [list(b) for b in kept_bounds.values()]


def test_teacher_flags_hide_what_they_name_and_stay_in_the_share_link(app):
    a = app("depth=3&optimizer_hide=true&lr_hide=1&share_hide=true&batch_norm_hide=false")
    assert a.controls["optimizer"].layout.display == "none" and a.controls["lr"].layout.display == "none"
    assert a.controls["batch_norm"].layout.display != "none" and a.controls["depth"].layout.display != "none"
    assert a.cfg.depth == 3 and a.message.value == ""  # flags are not settings, and all were valid
    assert a.share.value.endswith("&lr_hide=true&optimizer_hide=true&share_hide=true")
    b = app("optimiser_hide=true&lr_hide=maybe")
    assert "optimiser_hide (no control named &#x27;optimiser&#x27;" in b.message.value
    assert "lr_hide=maybe (allowed: true or false)" in b.message.value
    assert b.controls["lr"].layout.display != "none"


def test_the_page_explains_every_panel_and_the_chosen_preset(app):
    from bpviz.widgets.panels import PANELS

    from bpviz.presets import DESCRIPTIONS

    a = app("dataset=xor&optimizer=sa_sgd")  # a run that shows every panel
    assert all(p.explain and p.title in a.figure.explain.value for p in PANELS)
    a.preset.value = "deep-tanh-bn"
    assert wait_for(lambda: a.session.cfg.batch_norm and a.session.cfg.depth == 16)
    assert DESCRIPTIONS["deep-tanh-bn"] in html.unescape(a.preset_note.value)


def test_optimizer_options_have_readable_names_and_their_help_as_tooltip():
    from bpviz.widgets.controls import option_widget

    from bpviz.optim import ALGORITHMS

    for algorithm in ALGORITHMS.values():
        for name, option in algorithm.OPTIONS.items():
            w = option_widget(name, option, option.default)
            assert "_" not in w.description and name in w.tooltip and option.help in w.tooltip, (algorithm.name, name)


def test_an_empty_accuracy_panel_reads_0_to_1_and_autoranges_once_it_has_points(app):
    a = app("dataset=xor&depth=2&width=8&steps=400")
    axis = a.figure.widgets["accuracy"].layout.yaxis
    assert axis.autorange is False and tuple(axis.range) == (0.0, 1.02)
    a.start_btn.click()
    assert wait_for(lambda: len(trace(a, "test accuracy").y) > 0 and axis.autorange is True)


def test_the_panels_share_the_figures_height_and_only_the_bottom_row_titles_its_step_axis():
    from bpviz.widgets.grid import HEIGHTS, columns, panel_height, x_titled
    from bpviz.widgets.panels import PANELS

    for n in range(1, len(PANELS) + 1):
        rows = -(-n // columns(n))
        for present in (False, True):
            assert rows * panel_height(n, present) <= HEIGHTS[present] < (rows + 1) * panel_height(n, present)
    # six panels, three rows: the bottom row's; five: the bottom of each column (gradient norms on the right)
    titled = {n: [p.short for p in PANELS[:n] if x_titled(list(PANELS[:n]), p)] for n in (5, 6)}
    assert titled == {5: ["gradient norms", "spectrum"], 6: ["spectrum", "SA-SGD scales"]}


def test_the_step_axes_end_with_a_short_run_and_grow_with_a_long_one():
    from bpviz.widgets.grid import x_extent

    assert x_extent(0, 400) == x_extent(399, 400) == 400  # a short run: the whole run from the start
    assert x_extent(0, 200_000) == 100 and x_extent(90, 200_000) == 200 and x_extent(900, 200_000) == 2000
    assert x_extent(190_000, 200_000) == 200_000  # never past the run's end


def test_a_teachers_lock_keeps_a_setting_whatever_asks_to_change_it(app):
    a = app("lr=0.05&optimizer=sgd&lr_lock=true&options_lock=true&preset_lock=true&depth_hide=true")
    assert a.controls["lr"].disabled and a.preset.disabled and a.lesson.load_btn.disabled
    assert all(w.disabled for w in a.option_widgets.values()) and not a.controls["depth"].disabled
    assert a.share.value.endswith("&depth_hide=true&lr_lock=true&options_lock=true&preset_lock=true")
    a.publisher.put("edit", {"lr": 0.3})  # a page edited by hand: refused, named
    assert wait_for(lambda: "lr is locked" in a.message.value) and a.cfg.lr == 0.05
    depth = a.cfg.depth + 1
    a.json.value = json.dumps({**a.cfg.to_dict(), "lr": 0.3, "depth": depth, "name": ""})
    a.load_json_btn.click()  # the JSON box changes depth, but not the locked step size
    assert wait_for(lambda: a.cfg.depth == depth) and a.cfg.lr == 0.05 and a.session.cfg.lr == 0.05
    assert "kept as the teacher's link locks them: lr" in html.unescape(a.message.value)
    a.controls["optimizer"].value = "sa_sgd"  # options locked: the new optimizer's controls too
    assert wait_for(lambda: a.cfg.optimizer == "sa_sgd")
    assert a.option_widgets and all(w.disabled for w in a.option_widgets.values())


def test_editing_a_presets_setting_makes_the_settings_custom(app):
    a = app()
    name = a.lesson.step.preset  # the lesson's step says when its preset is loaded
    a.preset.value = name
    assert wait_for(lambda: a.cfg.name == name and "is loaded" in a.lesson.loaded.value)
    depth = a.cfg.depth + 1
    a.controls["depth"].value = depth
    assert wait_for(lambda: a.cfg.depth == depth and a.preset.value == "" and a.lesson.loaded.value == "")
    assert a.preset_note.value == ""


def test_the_hessian_menu_says_what_auto_does(app):
    """The "auto" cadence gives the front-loaded reports whatever they cost and the share to the rest: the menu
    and its tooltip say both, with the numbers the session runs with."""
    import inspect

    from bpviz.loop import MIN_REPORTS, front_loaded_steps
    from bpviz.session import TrainingSession

    share = inspect.signature(TrainingSession).parameters["hessian_share"].default
    menu = app().form.widgets["hessian_every"]
    label = dict((v, k) for k, v in menu.options)["auto"]
    assert (
        label == f"auto ({MIN_REPORTS} early + ≤{share:.0%} of time)" and len(front_loaded_steps(10**6)) == MIN_REPORTS
    )
    assert f"{MIN_REPORTS} more" in menu.tooltip and "whatever they cost" in menu.tooltip


def test_stop_and_new_settings_during_a_long_report_do_not_wait_for_it(app, monkeypatch):
    """A deep BN net's report can outlast the session's stop timeout on a busy machine (14 s
    measured): Stop and a new network then act at once, and the old worker leaves after its report."""
    import threading

    from bpviz import session as session_module

    real = session_module.local_hessian_report
    inside, release, calls = threading.Event(), threading.Event(), []

    def long_report(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:  # the first report after the starting network's: the worker stays in it
            inside.set()
            release.wait(60)
        return real(*args, **kwargs)

    monkeypatch.setattr(session_module, "local_hessian_report", long_report)
    a = app("dataset=xor&depth=2&width=8&steps=100000")
    a.start_btn.click()
    assert inside.wait(30)
    old = a.session
    a.stop_btn.click()
    assert wait_for(lambda: "Stopping: the run ends once the local-Hessian report" in a.message.value)
    assert old.state.value == "running" and "Error" not in a.message.value  # still inside its report
    a.controls["depth"].value = 3  # a new network while the old worker computes
    assert wait_for(lambda: a.session is not old and a.session.cfg.depth == 3)
    assert "Stopping" not in a.message.value and old.state.value == "running"
    release.set()
    assert old.wait(30) and old.state.value == "finished"
