"""A sweep on a Ray cluster of two machines: two Ray nodes started on this one, each with its own
raylet and object store, as ``ray start`` on two hosts makes them. The runs are spread over both
nodes, a worker that dies is reported and its run tried again on the cluster, and what is gathered
equals what the process executor gathers."""

import os
from pathlib import Path

import ray
from ray.cluster_utils import Cluster
from test_reproduce import comparable

from bpviz.reproduce import plan
from bpviz.reproduce.executor import run_local
from bpviz.reproduce.ray_executor import run_ray
from bpviz.reproduce.runner import RunJob, run_job

LABELS = ("sgd lr=0.1", "proxbp lr=1", "sibp lr=1", "sibp lr=10")


def jobs(out: Path) -> list[RunJob]:
    experiment = plan("sibp-mnist", out / "data", is_tiny=True)
    runs = [run for run in experiment.runs if run.label in LABELS]
    every = (experiment.eval_every, experiment.report_every, experiment.checkpoint_every)
    return [
        RunJob(run.label, run.cfg.to_dict(), str(out / "runs" / str(i)), *every, resume=False)
        for i, run in enumerate(runs)
    ]


def gathered(summaries: list[dict]) -> list[tuple]:
    return [
        (s["label"], {k: v for k, v in s.items() if k not in ("folder", "records")}, comparable(s["records"]))
        for s in summaries
    ]


def test_a_sweep_on_two_ray_nodes_is_spread_survives_a_dead_worker_and_gathers_the_same(tmp_path, capsys):
    local = run_local(jobs(tmp_path / "local"), 0, workers=2, quiet=True)
    marks = tmp_path / "marks"
    marks.mkdir()
    dying = LABELS[2]

    def on_a_node(job: RunJob) -> dict:
        """run_job, noting the node it ran on; the first attempt of one run kills its worker."""
        import ray

        (marks / f"{Path(job.folder).name}.{ray.get_runtime_context().get_node_id()}").write_text("")
        died = marks / "died"
        if job.label == dying and not died.exists():
            died.write_text("")
            os._exit(3)
        return run_job(job)

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
    cluster.add_node(num_cpus=1)
    cluster.wait_for_nodes()
    try:
        on_ray = run_ray(jobs(tmp_path / "ray"), 0, cluster.address, quiet=False, target=on_a_node)
        nodes = {node["NodeID"] for node in ray.nodes() if node["Alive"]}
    finally:
        ray.shutdown()
        cluster.shutdown()
    assert gathered(on_ray) == gathered(local)
    ran_on = {mark.suffix[1:] for mark in marks.glob("*.*")}
    assert len(nodes) == 2 and ran_on == nodes, "the runs were not spread over both nodes"
    assert f"reproduce: {dying} failed on Ray" in capsys.readouterr().out
