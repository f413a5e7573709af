import json

from bpviz.cli import main
from bpviz.runs import list_runs


def test_train_a_preset_then_list_and_export_it(tmp_path, capsys):
    assert main(["train", "--preset", "deep-tanh-orthogonal", "--steps", "60", "--runs-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "finished at step 60" in out and "saved to" in out
    runs, problems = list_runs(tmp_path)
    assert len(runs) == 1 and problems == [] and runs[0].config.name == "deep-tanh-orthogonal"
    assert main(["runs", "--runs-dir", str(tmp_path)]) == 0
    assert runs[0].run_id in capsys.readouterr().out
    assert main(["export", runs[0].run_id, "--csv", "--runs-dir", str(tmp_path)]) == 0
    header = (runs[0].path / "metrics.csv").read_text().splitlines()[0]
    assert header.startswith("step,") and "batch_loss" in header


def test_train_from_a_config_file_and_bad_input(tmp_path, capsys):
    cfg = tmp_path / "run.json"
    cfg.write_text(json.dumps({"dataset": "xor", "depth": 2, "width": 8, "steps": 30}))
    assert main(["train", "--config", str(cfg), "--runs-dir", str(tmp_path / "runs")]) == 0
    cfg.write_text(json.dumps({"dataset": "xor", "activation": "gelu"}))
    assert main(["train", "--config", str(cfg)]) == 2
    assert "activation: got 'gelu'" in capsys.readouterr().err
    assert main(["train", "--preset", "nope"]) == 2
    assert "available presets" in capsys.readouterr().err


def test_a_diverging_run_exits_nonzero_and_says_why(tmp_path, capsys):
    cfg = tmp_path / "run.json"
    cfg.write_text(
        json.dumps(
            {
                "dataset": "xor",
                "depth": 3,
                "width": 16,
                "steps": 5000,
                "lr": 1e4,
                "activation": "relu",
                "init": "kaiming",
            }
        )
    )
    assert main(["train", "--config", str(cfg), "--runs-dir", str(tmp_path / "runs")]) == 1
    assert "diverged at step" in capsys.readouterr().out


def test_presets_lists_every_preset(capsys):
    assert main(["presets"]) == 0
    out = capsys.readouterr().out
    for name in (
        "deep-tanh-gaussian",
        "deep-tanh-orthogonal",
        "deep-tanh-bn",
        "deep-tanh-skip",
        "sgd-bn",
        "sa-sgd-bn",
        "sgd-large-step",
        "sibp-large-step",
    ):
        assert name in out


def test_train_resumes_a_run_from_its_folder(tmp_path, capsys):
    from bpviz.runs import list_runs

    assert main(["train", "--preset", "deep-tanh-orthogonal", "--steps", "40", "--runs-dir", str(tmp_path)]) == 0
    (first,) = list_runs(tmp_path)[0]
    assert "bpviz train --resume" in capsys.readouterr().out
    assert main(["train", "--resume", str(first.path), "--steps", "70", "--runs-dir", str(tmp_path)]) == 0
    second = next(r for r in list_runs(tmp_path)[0] if r.path != first.path)
    assert second.records[0] == {"step": 40, "resumed_from": str(first.path / "checkpoint.pt")}
    assert second.status["step"] == 70 and second.config == first.config.replace(steps=70)
    assert main(["train", "--resume", str(tmp_path / "nothing-here.pt")]) == 2
    assert "not a readable bpviz checkpoint" in capsys.readouterr().err
