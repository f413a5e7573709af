"""The class hub's parts without a hub: accounts and their check, the overview's reading of runs
folders (written by a real TrainingSession), and the announcement's refusal of bad input."""

from __future__ import annotations

import asyncio
import json
import stat
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "deploy" / "jupyterhub"))

from bpviz_class.accounts import ClassAuthenticator, make_class  # noqa: E402
from bpviz_class.overview import write_announcement  # noqa: E402
from bpviz_class.summary import summarise, tail_records  # noqa: E402

from bpviz.config import RunConfig  # noqa: E402
from bpviz.session import TrainingSession  # noqa: E402


def test_accounts_check_the_generated_passwords_and_nothing_else(tmp_path):
    passwords = make_class(tmp_path, ["alice", "bob"], teacher="prof")
    assert set(passwords) == {"prof", "alice", "bob"} and len(set(passwords.values())) == 3
    assert stat.S_IMODE((tmp_path / "passwords.csv").stat().st_mode) == 0o600
    assert passwords["alice"] not in (tmp_path / "accounts.json").read_text()  # only salted hashes
    auth = ClassAuthenticator(class_dir=str(tmp_path))

    def login(name, password):
        # in a thread of its own: an earlier test may leave an event loop running in this one
        coro = auth.authenticate(None, {"username": name, "password": password})
        return ThreadPoolExecutor(1).submit(asyncio.run, coro).result()

    assert login("alice", passwords["alice"]) == "alice"
    assert login("ALICE ", passwords["alice"]) == "alice"
    assert login("alice", passwords["bob"]) is None
    assert login("mallory", passwords["alice"]) is None
    with pytest.raises(ValueError, match="user names .*'Bad Name'.*allowed"):
        make_class(tmp_path / "x", ["Bad Name"])


def test_the_overview_reads_a_students_latest_run_from_its_folder(tmp_path):
    runs = tmp_path / "runs" / "alice" / "page-1"
    session = TrainingSession(RunConfig(steps=60, depth=2, width=8), runs_dir=runs, loss_every=1, eval_every=20)
    session.start()
    assert session.wait(timeout=60)
    row = summarise("alice", tmp_path / "runs" / "alice")
    assert row.state == "finished" and row.step == 60 and row.steps == 60 and row.runs == 1
    records = [json.loads(line) for line in next(runs.glob("*/metrics.jsonl")).read_text().splitlines()]
    losses = [r["batch_loss"] for r in records if "batch_loss" in r]
    assert row.batch_loss == pytest.approx(losses[-1])
    kappas = [r for r in records if any(k.startswith("cond/input/") for k in r)]
    assert kappas, "the run made a Hessian report"
    last = kappas[-1]
    assert row.kappa_max == pytest.approx(max(v for k, v in last.items() if k.startswith("cond/input/")))
    assert "spirals" in row.settings and "lr 0.05" in row.settings
    assert summarise("bob", tmp_path / "runs" / "bob").state == "no run yet"


def test_a_half_written_last_line_and_a_cut_first_line_are_skipped(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text(
        "".join(json.dumps({"step": i, "batch_loss": 1.0 / (i + 1)}) + "\n" for i in range(100)) + '{"step": 10'
    )
    assert [r["step"] for r in tail_records(path)] == list(range(100))
    tail = tail_records(path, size=200)
    assert tail and tail[-1]["step"] == 99 and all(isinstance(r, dict) for r in tail)


def test_an_announcement_names_the_field_it_refuses(tmp_path):
    note = write_announcement(tmp_path, "spirals-relu", "?depth=3&init=orthogonal", " look ")
    assert note["id"] == 1 and note["link"] == "depth=3&init=orthogonal" and note["message"] == "look"
    assert write_announcement(tmp_path, "", "", "again")["id"] == 2
    with pytest.raises(ValueError, match="preset 'nope': allowed are .*spirals-relu"):
        write_announcement(tmp_path, "nope", "", "")
    with pytest.raises(ValueError, match="link"):
        write_announcement(tmp_path, "", 'x"><script>', "")
    with pytest.raises(ValueError, match="a preset, a link or a message"):
        write_announcement(tmp_path, "", "", "  ")
    assert json.loads((tmp_path / "announcement.json").read_text())["id"] == 2  # refusals changed nothing


def test_the_dashboard_shows_what_the_teacher_pushed_and_loads_its_preset(tmp_path):
    from bpviz.widgets.class_note import ClassNote

    loaded = []
    note = ClassNote(tmp_path / "announcement.json", load_preset=loaded.append, poll=3600)
    assert note.widget.layout.display == "none"  # nothing pushed yet
    write_announcement(tmp_path, "spirals-relu", "depth=3", "Look at the <boundary>")
    note.check()
    assert note.widget.layout.display == "" and note.button.layout.display == ""
    assert "Look at the &lt;boundary&gt;" in note.text.value and 'href="?depth=3"' in note.text.value
    note.button.click()
    assert loaded == ["spirals-relu"]
    write_announcement(tmp_path, "", "", "only a message")
    note.check()
    assert "only a message" in note.text.value and note.button.layout.display == "none"
    note.close()


def test_the_kubernetes_recipe_names_files_and_settings_that_exist():
    """What can be checked here without Helm or a container builder (deploy/jupyterhub/README.md)."""
    import re

    import yaml

    root = Path(__file__).resolve().parents[1]
    values = yaml.safe_load((root / "deploy" / "kubernetes" / "values.yaml").read_text())
    local = (root / "deploy" / "jupyterhub" / "jupyterhub_config.py").read_text()
    assert f'c.Spawner.default_url = "{values["singleuser"]["defaultUrl"]}"' in local
    launch = (root / "widgets" / "launch.py").read_text()
    assert all(name in launch for name in values["singleuser"]["extraEnv"])  # the dashboard reads them
    assert values["cull"]["enabled"] and values["singleuser"]["memory"]["limit"]
    for name in ("Dockerfile", "Dockerfile.hub"):
        dockerfile = (root / "deploy" / "kubernetes" / name).read_text()
        for source in re.findall(r"^COPY (\S+(?: \S+)*) \S+$", dockerfile, flags=re.M):
            for path in source.split():
                assert (root / path).exists(), (name, path)
        assert "torch==2.13.0" in dockerfile, name
    assert "jupyterhub-singleuser" in (root / "deploy" / "kubernetes" / "Dockerfile").read_text()
    # the overview in the hub's pod: its module, the settings it reads, one port wherever it is named
    hub = values["hub"]
    service = hub["services"]["class-overview"]
    assert (
        service["command"][-1] == "bpviz_class.overview"
        and "bpviz_class" in (root / "deploy" / "kubernetes" / "Dockerfile.hub").read_text()
    )
    overview = (root / "deploy" / "jupyterhub" / "bpviz_class" / "overview.py").read_text()
    assert all(f'"{name}"' in overview for name in service["environment"]), service["environment"]
    port = int(service["url"].rsplit(":", 1)[1])
    assert [p["port"] for p in hub["service"]["extraPorts"]] == [port]
    assert [p["port"] for rule in hub["networkPolicy"]["ingress"] for p in rule["ports"]] == [port]
    assert [p["port"] for rule in values["proxy"]["chp"]["networkPolicy"]["egress"] for p in rule["ports"]] == [port]
    # the same roles as on one machine
    for role in hub["loadRoles"].values():
        assert all(f'"{scope}"' in local for scope in role["scopes"]), role


def test_a_paused_run_says_so_in_its_folder(tmp_path):
    """The overview reads status.json: pausing and resuming are written there, not only shown in the page."""
    session = TrainingSession(RunConfig(steps=10**6, depth=2, width=8), runs_dir=tmp_path)
    session.start()
    status = lambda: json.loads(next(tmp_path.glob("*/status.json")).read_text())  # noqa: E731
    session.pause()
    assert status()["state"] == "paused" and summarise("x", tmp_path).state == "paused"
    session.resume()
    assert status()["state"] == "running"
    session.stop()
    assert status()["state"] == "finished" and summarise("x", tmp_path).state == "stopped early"


def test_the_values_check_merges_as_helm_does_and_reports_what_the_schema_refuses(tmp_path, capsys):
    """deploy/kubernetes/check_values.py (run against the real chart's schema by hand: no chart here)."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "deploy" / "kubernetes"))
    import yaml
    from check_values import VALUES, main, merged

    assert merged({"a": {"b": 1, "c": 2}, "d": [1]}, {"a": {"b": 3}, "d": [2]}) == {"a": {"b": 3, "c": 2}, "d": [2]}
    ours = yaml.safe_load(VALUES.read_text())
    chart = tmp_path / "chart"
    chart.mkdir()
    (chart / "values.yaml").write_text(yaml.safe_dump({"hub": {"baseUrl": "/"}}))
    # the chart's kind of schema: named keys only, some required
    keys = {key: {"type": "object"} for key in ours}
    schema = {"type": "object", "additionalProperties": False, "required": ["hub"], "properties": keys}
    schema["properties"]["hub"] = {"type": "object", "required": ["baseUrl"]}
    (chart / "values.schema.yaml").write_text(yaml.safe_dump(schema))
    assert main(chart) == 0  # baseUrl comes from the chart's defaults, as with Helm
    del schema["properties"]["cull"]
    (chart / "values.schema.yaml").write_text(yaml.safe_dump(schema))
    assert main(chart) == 1
    assert "'cull' was unexpected" in capsys.readouterr().out
