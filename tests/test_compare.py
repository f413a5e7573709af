import csv
import json
import math

from bpviz.cli import main
from bpviz.compare import sa_sgd_comparison, step_size_sweep, write_outputs
from bpviz.config import RunConfig
from bpviz.train import run


def test_run_records_from_step_zero_and_marks_divergence():
    ok = run(RunConfig(dataset="xor", depth=2, width=8, steps=20, lr=0.1), eval_every=10)
    assert [r["step"] for r in ok.records] == [0, 10, 20] and ok.status == "finished"
    assert {"train_loss", "test_loss", "test_accuracy", "batch_loss"} <= set(ok.records[-1])
    bad = run(
        RunConfig(dataset="xor", depth=3, width=16, steps=50, lr=1e4, activation="relu", init="kaiming"), eval_every=1
    )
    assert bad.status == "diverged" and bad.diverged_at is not None and bad.diverged_at < 50
    assert not math.isfinite(bad.final["batch_loss"]) or "train_loss" not in bad.final
    assert len(bad.records) >= 1  # history up to the divergence is kept


def test_sweep_finds_the_largest_stable_step_and_writes_json_csv_html(tmp_path):
    result = step_size_sweep("digits", step_sizes=(0.1, 1e4), steps=30, algorithms=("sgd", "proxbp"))
    rows = {(r["algorithm"], r["lr"]): r for r in result["rows"]}
    assert rows[("sgd", 0.1)]["stable"] and not rows[("sgd", 1e4)]["stable"]
    assert result["largest_stable_step"]["sgd"] == 0.1
    paths = write_outputs(result, tmp_path, "bpviz compare sweep --test")
    data = json.loads(paths[0].read_text())
    assert data["command"] == "bpviz compare sweep --test" and len(data["rows"]) == 4
    with paths[1].open() as fh:
        assert len(list(csv.DictReader(fh))) == 4
    page = paths[2].read_text()
    assert (
        page.startswith("<!doctype html>")
        and "<svg" in page
        and "http" not in page.replace("http://www.w3.org/2000/svg", "")
    )


def test_sa_sgd_comparison_runs_every_variant_on_both_archs(tmp_path):
    result = sa_sgd_comparison(step_sizes=(0.1,), steps=10)
    variants = ("sgd", "sa_sgd bn_weights", "sa_sgd all", "sa_sgd head")
    assert [(r["arch"], r["algorithm"]) for r in result["rows"]] == [(a, v) for a in ("mlp", "cnn") for v in variants]
    assert set(result["best"]) == {f"{a} {v}" for a in ("mlp", "cnn") for v in variants}
    losses = {(r["arch"], r["algorithm"]): r["final_train_loss"] for r in result["rows"]}
    assert len({losses[("cnn", v)] for v in variants}) == 4  # the variants are different runs
    paths = write_outputs(result, tmp_path, "bpviz compare sa-sgd --test")
    with paths[1].open() as fh:
        assert {r["algorithm"] for r in csv.DictReader(fh)} == set(variants)
    assert all(v in paths[2].read_text() for v in variants)


def test_cli_compare_writes_files(tmp_path, capsys):
    assert main(["compare", "sweep", "--dataset", "xor", "--lrs", "0.1", "--steps", "10", "--out", str(tmp_path)]) == 0
    out, err = capsys.readouterr()
    assert "largest stable step" in out
    assert "compare" in err and "3/3" in err  # the progress bar over the runs (SGD, ProxBP, SIBP at one step size)
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "step_size_sweep.csv",
        "step_size_sweep.html",
        "step_size_sweep.json",
    ]


def test_a_sweep_in_worker_processes_and_on_ray_equals_one_in_this_process():
    import ray

    args = dict(dataset="xor", step_sizes=(0.1, 1e4), steps=20, algorithms=("sgd", "sibp"))
    here = step_size_sweep(**args, workers=0)
    in_processes = step_size_sweep(**args, workers=2)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        on_ray = step_size_sweep(**args, ray="auto")
    finally:
        ray.shutdown()
    same = lambda result: json.dumps([result["rows"], result["curves"]])  # noqa: E731 (NaN-safe: 'NaN' text)
    assert same(in_processes) == same(here) == same(on_ray)
    assert {r["status"] for r in here["rows"]} == {"finished", "diverged"}  # both kinds crossed over


def test_a_log_axis_over_many_decades_gets_a_readable_number_of_ticks():
    from bpviz.html_plot import MAX_TICKS, line_chart, ticks

    assert ticks(-1, 2, log=True) == [0.1, 1.0, 10.0, 100.0]
    wide = ticks(-1, 31, log=True)  # a run that diverged to 1e31 beside ones near 0.1
    decades = [round(math.log10(t)) for t in wide]
    assert len(wide) <= MAX_TICKS + 1 and decades[0] == -1
    assert len({b - a for a, b in zip(decades, decades[1:])}) == 1  # evenly spaced
    svg = line_chart({"a": ([1, 2], [0.1, 1e31])}, "t", "x", "y", logy=True)
    assert svg.count('text-anchor="end"') == len(wide)  # one label per y tick
