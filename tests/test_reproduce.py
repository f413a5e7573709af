"""``bpviz reproduce``: every experiment end to end in --tiny mode (synthetic files in the real
formats), resume equal to an uninterrupted run, retries of a failed run, and the refusals."""

import json
import math
import os
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from bpviz.checkpoint import read_checkpoint
from bpviz.cli import main
from bpviz.config import ConfigError
from bpviz.data import DataError
from bpviz.reproduce import EXPERIMENTS, plan, report, reproduce, runner
from bpviz.reproduce import executor as executor_module
from bpviz.reproduce.runner import RunJob, run_job
from bpviz.runs import load_run


@pytest.mark.parametrize("name", list(EXPERIMENTS))
def test_every_experiment_runs_end_to_end_in_tiny_mode(name, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["reproduce", name, "--tiny", "--out", str(out), "--workers", "2", "--png"]) == 0
    result = json.loads((out / "results.json").read_text())
    experiment = EXPERIMENTS[name]
    assert [r["label"] for r in result["runs"]] == [r.label for r in experiment.runs] and result["tiny"]
    for run in result["runs"]:
        assert run["summary"]["state"] in ("finished", "diverged"), run["summary"]
        steps = [r["step"] for r in run["records"]]
        assert steps[0] == 0 and max(steps) == run["summary"]["step"]
        kappas = [k for r in run["records"] for k in r if k.startswith(("cond/", "cond_lower_bound/"))]
        assert kappas, "every block's local Hessian is reported"
        if run["summary"]["state"] == "finished":
            assert {"test_accuracy", "train_loss", "batch_loss_mean"} <= {k for r in run["records"] for k in r}
    page = (out / "results.html").read_text()
    assert experiment.title in page and "--tiny" in page and "Where each setting comes from" in page
    assert "ours" in page  # the recipe's own choices are labelled as such
    rows = (out / "results.csv").read_text().splitlines()
    assert rows[0].startswith("run,step,") and len(rows) > len(experiment.runs)
    assert "wrote" in capsys.readouterr().out
    assert_the_pngs_show_the_charts(result, out / "figures")
    # what notebooks 03 and 04 print of a reproduction: each run's last test evaluation and final loss
    for row, run in zip(report.reproduction_rows(result), result["runs"], strict=True):
        tested = [r for r in run["records"] if "test_accuracy" in r]
        assert row["run"] == run["label"] and row["state"] == run["summary"]["state"]
        if run["summary"]["state"] == "finished":
            assert (row["test accuracy"], row["at step"]) == (tested[-1]["test_accuracy"], tested[-1]["step"])
            assert row["final train loss"] == run["summary"]["train_loss"]
    assert report.recipe_lines(name)[0] == experiment.title


def assert_the_pngs_show_the_charts(result: dict, folder: Path) -> None:
    """One PNG per chart of the HTML page, at the size asked for, with each series' colour drawn in it."""
    from bpviz.widgets import report_png
    from PIL import Image

    from bpviz.html_plot import series_style

    expected = report.charts(result)
    assert sorted(p.name for p in folder.iterdir()) == sorted(f"{c.name}.png" for c in expected)
    for chart in expected:
        image = Image.open(folder / f"{chart.name}.png").convert("RGB")
        assert image.size == (report_png.WIDTH * report_png.SCALE, report_png.HEIGHT * report_png.SCALE)
        drawn = {colour for _, colour in image.getcolors(maxcolors=1 << 20)}
        for i, (label, (_xs, ys)) in enumerate(chart.series.items()):
            if report_png._plottable(list(ys), chart.logy).count(None) < len(ys):
                hexcode = series_style(i)[0]
                rgb = tuple(int(hexcode[k : k + 2], 16) for k in (1, 3, 5))
                assert rgb in drawn, f"{chart.name}: the series {label!r} is not drawn"


def tiny_job(tmp_path: Path, name: str = "lhbp-vgg13-cifar10", index: int = 1) -> RunJob:
    experiment = plan(name, tmp_path / "data", is_tiny=True)
    run = experiment.runs[index]
    return RunJob(run.label, run.cfg.to_dict(), str(tmp_path / "run"), 10, 20, 20, resume=False)


def comparable(records: list[dict]) -> list[dict]:
    """Records without their timings, NaN as a string (NaN != NaN: a diverged run's last loss)."""
    nan = lambda v: "nan" if isinstance(v, float) and math.isnan(v) else v  # noqa: E731
    return [{k: nan(v) for k, v in r.items() if k != "report_seconds"} for r in records]


def test_a_resumed_run_equals_an_uninterrupted_one(tmp_path, monkeypatch):
    job = tiny_job(tmp_path)  # SA-SGD on VGG13-BN with augmentation and step decay
    whole = run_job(replace(job, folder=str(tmp_path / "whole")))
    real_evaluate, calls = runner.evaluate_split, []

    def dies_after_the_checkpoint(trainer, split):
        calls.append(trainer.step_count)
        if trainer.step_count == 30:
            raise RuntimeError("the worker is killed")
        return real_evaluate(trainer, split)

    monkeypatch.setattr(runner, "evaluate_split", dies_after_the_checkpoint)
    with pytest.raises(RuntimeError):
        run_job(job)
    assert read_checkpoint(tmp_path / "run" / "checkpoint.pt")["step"] == 20
    monkeypatch.setattr(runner, "evaluate_split", real_evaluate)
    resumed = run_job(replace(job, resume=True))
    records, whole_records = resumed.pop("records"), whole.pop("records")
    assert resumed == {**whole, "folder": job.folder}
    assert comparable(records) == comparable(whole_records) == comparable(load_run(job.folder).records)
    a, b = read_checkpoint(tmp_path / "whole" / "checkpoint.pt"), read_checkpoint(tmp_path / "run" / "checkpoint.pt")
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])


def fails_once(job: RunJob) -> dict:
    """A worker that dies (exits without a word) the first time it is given a job."""
    marker = Path(job.folder + ".tried")
    if not marker.exists():
        marker.write_text("1")
        os._exit(3)
    return {"label": job.label, "folder": job.folder, "state": "finished", "resumed": job.resume}


def always_fails(job: RunJob) -> dict:
    raise ValueError("no luck")


def test_a_dead_worker_is_reported_and_its_run_tried_again(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(executor_module, "START_METHOD", "fork")  # the target lives in this test module
    jobs = [RunJob(f"r{i}", {}, str(tmp_path / f"r{i}"), 1, 1, 1, resume=False) for i in range(2)]
    results = executor_module.run_local(jobs, 2, workers=1, quiet=False, target=fails_once)
    assert [r["state"] for r in results] == ["finished", "finished"] and all(r["resumed"] for r in results)
    assert "worker process died" in capsys.readouterr().out
    results = executor_module.run_local(jobs[:1], 1, workers=1, quiet=True, target=always_fails, retries=1)
    assert results[0]["state"] == "failed" and results[0]["error"] == "ValueError: no luck"


def test_bad_input_is_named(tmp_path):
    with pytest.raises(ConfigError, match="give --data-dir"):
        plan("sibp-mnist", tmp_path)
    (tmp_path / "mnist").mkdir()
    with pytest.raises(DataError, match="train-images-idx3-ubyte"):
        plan("sibp-mnist", tmp_path, data_dir=str(tmp_path / "mnist"))
    plan("lhbp-vgg13-cifar100", tmp_path / "t", is_tiny=True)  # writes real-format files...
    meta = tmp_path / "t" / "tiny-data" / "cifar100" / "cifar-100-python" / "meta"
    meta.write_bytes(b"\x80\x02not a pickle")  # ...of which one is now broken
    with pytest.raises(DataError, match=f"{meta} is not a valid CIFAR-100 meta file"):
        plan("lhbp-vgg13-cifar100", tmp_path, data_dir=str(meta.parent))
    with pytest.raises(ValueError, match="experiment: got 'vgg16'; allowed: lhbp-vgg13-cifar10"):
        plan("vgg16", tmp_path)


def test_png_without_a_writer_is_refused_before_anything_trains(tmp_path, monkeypatch):
    monkeypatch.setattr(report, "entry_points", lambda group: [])  # bpviz[figures] not installed
    with pytest.raises(ConfigError, match=r"png: no png figure writer is installed: pip install 'bpviz\[figures\]'"):
        reproduce("sibp-mnist", tmp_path / "out", is_tiny=True, quiet=True, png=True)
    assert not (tmp_path / "out").exists()


def test_a_failing_png_writer_keeps_the_results_and_says_so(tmp_path, monkeypatch, capsys):
    def no_browser(result: dict, out: Path) -> list[Path]:
        raise RuntimeError("no Chrome found")

    monkeypatch.setattr("bpviz.reproduce.figure_writer", lambda kind="png": no_browser)
    out = tmp_path / "out"
    assert main(["reproduce", "sibp-mnist", "--tiny", "--out", str(out), "--workers", "1", "--png"]) == 1
    err = capsys.readouterr().err
    assert "png: the PNG figures could not be written (no Chrome found)" in err and "results.html" in err
    assert {p.name for p in out.iterdir()} >= {"results.json", "results.csv", "results.html"}


def test_a_checkpoint_of_another_config_and_an_earlier_reproduction_are_refused(tmp_path):
    job = tiny_job(tmp_path)
    run_job(job)
    other = replace(job, config={**job.config, "lr": 0.5}, resume=True)
    with pytest.raises(ConfigError, match="lr differ"):
        run_job(other)
    out = tmp_path / "out"
    first, _ = reproduce("sibp-mnist", out, is_tiny=True, quiet=True)
    with pytest.raises(ConfigError, match="add --resume"):
        reproduce("sibp-mnist", out, is_tiny=True, quiet=True)
    again, _ = reproduce("sibp-mnist", out, is_tiny=True, quiet=True, resume=True)  # every run had ended
    assert without_places(again) == without_places(first)


def without_places(result: dict) -> list[tuple]:
    """What two executors must agree on: each run's summary and records (not where they were written,
    nor how long a report took)."""
    return [
        (r["label"], {k: v for k, v in r["summary"].items() if k != "folder"}, comparable(r["records"]))
        for r in result["runs"]
    ]


@pytest.fixture(scope="module")
def local_ray():
    """A local two-CPU Ray instance, started once for the experiments below."""
    import ray

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


@pytest.mark.parametrize("name", list(EXPERIMENTS))
def test_each_reproduction_on_ray_gathers_what_the_process_executor_does(name, tmp_path, local_ray):
    local, _ = reproduce(name, tmp_path / "local", is_tiny=True, workers=2, quiet=True)
    on_ray, paths = reproduce(name, tmp_path / "ray", is_tiny=True, ray="auto", quiet=True)
    assert without_places(on_ray) == without_places(local)
    assert {p.name for p in paths} == {"results.json", "results.csv", "results.html"}


def test_an_unreachable_ray_address_fails_before_any_run_naming_it(tmp_path):
    with pytest.raises(ConfigError, match=r"ray: cannot reach a Ray cluster at '127\.0\.0\.1:9'"):
        reproduce("sibp-mnist", tmp_path, is_tiny=True, ray="127.0.0.1:9", quiet=True)
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("arch, bn", [("mlp", False), ("cnn", True)])
def test_the_whole_split_in_batches_equals_one_forward_pass_in_float64(arch, bn):
    """The reproductions' whole-split numbers come in batches of EVAL_BATCH; BN in eval mode makes
    each sample's output its own, so they must equal one pass over the split (float64, dense)."""
    from bpviz.config import RunConfig
    from bpviz.train import EVAL_BATCH, Trainer

    cfg = RunConfig(dataset="digits", arch=arch, batch_norm=bn, depth=2, width=8, n_train=1200, n_test=300)
    cfg = replace(cfg, dtype="float64")
    trainer = Trainer(cfg)
    for _ in range(5):  # BN's running statistics away from their initial values
        trainer.step()
    assert len(trainer.x_train) > 2 * EVAL_BATCH
    got = trainer.evaluate("train", max_samples=None)
    trainer.model.eval()
    with torch.no_grad():
        out = trainer.model(trainer.x_train)
    trainer.model.train()
    expected_loss = torch.nn.functional.cross_entropy(out, trainer.y_train).item()
    expected_accuracy = (out.argmax(1) == trainer.y_train).double().mean().item()
    assert got["loss"] == pytest.approx(expected_loss, rel=1e-12)
    assert got["accuracy"] == pytest.approx(expected_accuracy, abs=1e-15)
    assert runner.evaluate_split(trainer, "test") == {
        f"test_{k}": v for k, v in trainer.evaluate("test", max_samples=None).items()
    }
