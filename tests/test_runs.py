import csv
import json
import math
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from bpviz.config import RunConfig
from bpviz.runs import FLUSH_SECONDS, RunError, RunWriter, export_csv, list_runs, load_run

CFG = RunConfig(
    name="Deep tanh / test",
    dataset="digits",
    depth=6,
    width=16,
    init="orthogonal",
    optimizer="sgd",
    optimizer_options={"momentum": 0.9},
    lr=0.1,
    steps=50,
    device="cpu",
)


def on_disk(path: Path) -> list[str]:
    """The metrics file's lines as another process would read them now."""
    with open(path / "metrics.jsonl", encoding="utf-8") as fh:
        return fh.read().splitlines()


def test_writer_creates_the_run_folder_and_load_run_reads_it_back(tmp_path):
    w = RunWriter(tmp_path / "runs", CFG)
    assert w.path.parent == tmp_path / "runs"
    assert "deep-tanh-test" in w.path.name
    assert RunConfig.from_json((w.path / "config.json").read_text()) == CFG
    assert json.loads((w.path / "status.json").read_text())["state"] == "running"
    assert load_run(w.path).status["state"] == "running"
    for step in range(5):
        w.append({"step": step, "loss": 1.0 / (step + 1), "acc": step / 10})
    w.close("finished", step=4)

    lines = on_disk(w.path)
    assert [json.loads(line)["step"] for line in lines] == [0, 1, 2, 3, 4]
    run = load_run(w.path)
    assert run.run_id == w.path.name
    assert run.config == CFG
    assert run.records == [{"step": s, "loss": 1.0 / (s + 1), "acc": s / 10} for s in range(5)]
    assert run.status["state"] == "finished" and run.status["step"] == 4
    assert run.warnings == []
    assert not (w.path / "status.json.tmp").exists()


def test_explicit_run_id_and_no_overwrite(tmp_path):
    w = RunWriter(tmp_path, CFG, run_id="mine")
    w.close("finished")
    assert w.path == tmp_path / "mine"
    with pytest.raises(FileExistsError):
        RunWriter(tmp_path, CFG, run_id="mine")


def test_nan_and_inf_survive_the_round_trip(tmp_path):
    w = RunWriter(tmp_path, CFG, run_id="r")
    w.append(
        {
            "step": 1,
            "loss": float("nan"),
            "grad": float("inf"),
            "low": float("-inf"),
            "per_block": [1.0, float("nan")],
            "nested": {"x": float("inf")},
        }
    )
    w.close("diverged", step=1, last_loss=float("nan"))
    line = on_disk(w.path)[0]
    assert "NaN" not in line and "Infinity" not in line  # strict JSON, readable by any tool
    json.loads(line, parse_constant=lambda c: pytest.fail(f"non-standard constant {c}"))
    (record,) = load_run(w.path).records
    assert math.isnan(record["loss"]) and record["grad"] == math.inf and record["low"] == -math.inf
    assert record["per_block"][0] == 1.0 and math.isnan(record["per_block"][1])
    assert record["nested"] == {"x": math.inf}
    status = load_run(w.path).status
    assert status["state"] == "diverged" and math.isnan(status["last_loss"])


def test_records_reach_the_disk_within_the_flush_interval(tmp_path):
    assert FLUSH_SECONDS <= 1.0
    w = RunWriter(tmp_path, CFG, run_id="r")
    w.append({"step": 1})
    # whether or not step 1 is on disk yet, the next append after more than FLUSH_SECONDS flushes both
    time.sleep(FLUSH_SECONDS + 0.1)
    w.append({"step": 2})
    assert [json.loads(line) for line in on_disk(w.path)] == [{"step": 1}, {"step": 2}]
    # and again: flushing restarts the interval
    time.sleep(FLUSH_SECONDS + 0.1)
    w.append({"step": 3})
    assert len(on_disk(w.path)) == 3
    # an explicit flush writes everything at once
    w.append({"step": 4})
    w.flush()
    assert len(on_disk(w.path)) == 4
    w.close("finished")
    w.close("finished")  # closing twice is harmless


KILLED_WRITER = textwrap.dedent(
    """
    import itertools, sys, time
    from bpviz.config import RunConfig
    from bpviz.runs import RunWriter

    w = RunWriter(sys.argv[1], RunConfig(name="killed", steps=10, device="cpu"), run_id="killed")
    print("ready", flush=True)
    for step in itertools.count():
        w.append({"step": step, "loss": 1.0 / (step + 1), "tag": "x" * 40})
        time.sleep(0.01)
    """
)


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL")
def test_a_killed_writer_leaves_a_readable_run(tmp_path):
    proc = subprocess.Popen(
        [sys.executable, "-c", KILLED_WRITER, str(tmp_path)],
        stdout=subprocess.PIPE,
        cwd=Path(__file__).resolve().parents[1],
        text=True,
    )
    try:
        assert proc.stdout.readline().strip() == "ready"
        time.sleep(2.5)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
        proc.stdout.close()
    assert proc.returncode == -signal.SIGKILL
    path = tmp_path / "killed"

    # simulate the kill landing in the middle of a line
    with open(path / "metrics.jsonl", "a", encoding="utf-8") as fh:
        fh.write('{"step": 999999, "loss": 0.12')
    run = load_run(path)
    assert len(run.records) >= 100  # ~1.5 s of 100 records/s had been flushed at the kill
    assert [r["step"] for r in run.records] == list(range(len(run.records)))
    assert all(r["loss"] == 1.0 / (r["step"] + 1) and r["tag"] == "x" * 40 for r in run.records)
    assert len(run.warnings) == 1 and "truncated last line" in run.warnings[0]
    assert run.status["state"] == "running"  # never closed: a reader can tell it did not finish
    assert run.config.name == "killed"

    runs, problems = list_runs(tmp_path)
    assert [r.run_id for r in runs] == ["killed"] and problems == []


def test_a_corrupt_line_in_the_middle_is_skipped_with_a_warning(tmp_path):
    w = RunWriter(tmp_path, CFG, run_id="r")
    w.append({"step": 1})
    w.close("finished")
    with open(w.path / "metrics.jsonl", "a") as fh:
        fh.write('{"step": 2, "lo\n[1, 2]\n\n' + "[" * 100_000 + "\n" + '{"step": 3}\n')
    run = load_run(w.path)
    assert run.records == [{"step": 1}, {"step": 3}]
    assert len(run.warnings) == 3 and all("corrupt" in m for m in run.warnings)
    assert [m.split(":")[0] for m in run.warnings] == [
        "metrics.jsonl line 2",
        "metrics.jsonl line 3",
        "metrics.jsonl line 5",
    ]


def test_missing_pieces_do_not_stop_load_run(tmp_path):
    w = RunWriter(tmp_path, CFG, run_id="r")
    w.close("finished")
    (w.path / "metrics.jsonl").unlink()
    (w.path / "status.json").write_text("[1, 2]")
    run = load_run(w.path)
    assert run.records == [] and run.status == {"state": "unknown"} and run.warnings
    (w.path / "status.json").write_text("[" * 100_000)
    assert load_run(w.path).status == {"state": "unknown"}
    (w.path / "status.json").unlink()
    assert load_run(w.path).status == {"state": "unknown"}
    with pytest.raises(RunError, match="no config.json"):
        load_run(tmp_path / "nowhere")


def test_list_runs_reports_each_foreign_or_corrupt_entry_and_goes_on(tmp_path):
    good = RunWriter(tmp_path, CFG, run_id="20240101-000000-good")
    good.append({"step": 1, "loss": 0.5})
    good.close("finished", step=1)
    (tmp_path / "notes.txt").write_text("not a run")
    (tmp_path / "empty-folder").mkdir()
    (tmp_path / "bad-json").mkdir()
    (tmp_path / "bad-json" / "config.json").write_text('{"depth": 4,')
    (tmp_path / "bad-value").mkdir()
    (tmp_path / "bad-value" / "config.json").write_text(json.dumps({**CFG.to_dict(), "depth": -1}))
    (tmp_path / "not-an-object").mkdir()
    (tmp_path / "not-an-object" / "config.json").write_text("[1, 2, 3]")
    (tmp_path / "unknown-field").mkdir()
    (tmp_path / "unknown-field" / "config.json").write_text(json.dumps({"depth": 4, "colour": "red"}))
    (tmp_path / "config-is-a-folder").mkdir()
    (tmp_path / "config-is-a-folder" / "config.json").mkdir()
    (tmp_path / "deeply-nested").mkdir()
    (tmp_path / "deeply-nested" / "config.json").write_text("[" * 100_000 + "]" * 100_000)

    runs, problems = list_runs(tmp_path)
    assert [r.run_id for r in runs] == ["20240101-000000-good"]
    assert runs[0].records == [{"step": 1, "loss": 0.5}] and runs[0].status["state"] == "finished"
    bad = [
        "notes.txt",
        "empty-folder",
        "bad-json",
        "bad-value",
        "not-an-object",
        "unknown-field",
        "config-is-a-folder",
        "deeply-nested",
    ]
    assert len(problems) == len(bad)
    for name in bad:
        assert sum(p.startswith(name + ":") for p in problems) == 1, (name, problems)
    (value_problem,) = [p for p in problems if p.startswith("bad-value:")]
    assert "depth" in value_problem
    (field_problem,) = [p for p in problems if p.startswith("unknown-field:")]
    assert "colour" in field_problem

    assert list_runs(tmp_path / "does-not-exist") == ([], [])


def test_an_unreadable_metrics_file_is_a_warning_not_a_crash(tmp_path, monkeypatch):
    w = RunWriter(tmp_path, CFG, run_id="r")
    w.append({"step": 1})
    w.close("finished")
    read_text = Path.read_text

    def refuse_metrics(self, *args, **kwargs):
        if self.name == "metrics.jsonl":
            raise PermissionError(13, "Permission denied", str(self))
        return read_text(self, *args, **kwargs)

    monkeypatch.setattr(Path, "read_text", refuse_metrics)
    runs, problems = list_runs(tmp_path)
    assert [r.run_id for r in runs] == ["r"] and problems == []
    assert runs[0].records == [] and "metrics.jsonl" in runs[0].warnings[0]
    assert runs[0].status["state"] == "finished"


def test_export_csv_has_the_union_of_keys_and_one_row_per_record(tmp_path):
    w = RunWriter(tmp_path, CFG, run_id="r")
    w.append({"step": 0, "train_loss": 2.3, "test_loss": 2.31})
    w.append({"step": 1, "batch_loss": 2.0})
    w.append({"step": 2, "batch_loss": float("nan"), "spectrum": [1.0, 2.0], "blocks": {"a": 1}})
    w.append({"step": 3, "batch_loss": 1.5, "train_loss": 1.4, "accuracy": 0.5})
    w.close("finished")
    out = export_csv(load_run(w.path), tmp_path / "r.csv")
    with open(out, newline="") as fh:
        rows = list(csv.reader(fh))
    header, body = rows[0], rows[1:]
    assert header == ["step", "train_loss", "test_loss", "batch_loss", "accuracy"]
    assert len(body) == 4
    table = [dict(zip(header, row)) for row in body]
    assert [r["step"] for r in table] == ["0", "1", "2", "3"]
    assert table[0] == {"step": "0", "train_loss": "2.3", "test_loss": "2.31", "batch_loss": "", "accuracy": ""}
    assert math.isnan(float(table[2]["batch_loss"]))
    assert float(table[3]["accuracy"]) == 0.5 and float(table[3]["train_loss"]) == 1.4


def test_runs_saved_before_metrics_version_2_read_train_loss_as_the_batch_loss(tmp_path):
    """Old runs wrote the per-step mini-batch loss as train_loss; read back, it has its one name."""
    w = RunWriter(tmp_path, RunConfig(), run_id="old")
    w.append({"step": 10, "train_loss": 0.7})
    w.close("finished")
    status = json.loads((tmp_path / "old" / "status.json").read_text())
    assert status["metrics_version"] == 2
    assert load_run(tmp_path / "old").records == [{"step": 10, "train_loss": 0.7}]  # a new run: as written
    del status["metrics_version"]
    (tmp_path / "old" / "status.json").write_text(json.dumps(status))
    assert load_run(tmp_path / "old").records == [{"step": 10, "batch_loss": 0.7}]
