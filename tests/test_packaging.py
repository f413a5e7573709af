"""The project's shape: the engine imports without UI packages, environment.yml follows pyproject."""

import re
import subprocess
import sys
from pathlib import Path

import tomllib
import yaml

ROOT = Path(__file__).resolve().parents[1]
CONDA_TO_PIP = {"pytorch": "torch"}  # conda-forge names that differ from PyPI's


def test_import_bpviz_works_without_any_ui_package():
    blocker = (
        "import sys\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] in {'ipywidgets', 'plotly', 'voila', 'anywidget', 'jupyterlab', 'IPython',"
        " 'ipykernel', 'jupyter_server', 'tqdm'}:\n"
        "            raise ImportError('blocked UI package ' + name)\n"
        "sys.meta_path.insert(0, Block())\n"
        "import bpviz, bpviz.config, bpviz.models, bpviz.backmatching, bpviz.local_hessian, bpviz.data, bpviz.cli\n"
        "import torch\n"
        "cfg = bpviz.RunConfig(depth=2, width=4)\n"
        "m = bpviz.build_model(cfg, (2,), 2)\n"
        "print(bpviz.local_hessian_report(m, torch.randn(8, 2)).stats[0].lambda_max > 0)\n"
    )
    out = subprocess.run([sys.executable, "-c", blocker], capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "True"


def _split(req: str) -> tuple[str, str]:
    m = re.match(r"^\s*([A-Za-z0-9_.\-]+)\s*(.*)$", req)
    return m.group(1).lower(), m.group(2).replace(" ", "")


def test_environment_yml_names_the_same_dependencies_as_pyproject():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = dict(_split(r) for r in project["dependencies"])
    for reqs in project["optional-dependencies"].values():
        wanted.update(_split(r) for r in reqs if not r.startswith("bpviz["))
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    assert env["channels"] == ["conda-forge"]
    found = {}
    pip_section = []
    for dep in env["dependencies"]:
        if isinstance(dep, dict):
            pip_section = dep["pip"]
            continue
        name, spec = _split(dep)
        if name in ("python", "pip"):
            continue
        found[CONDA_TO_PIP.get(name, name)] = spec
    for dep in pip_section:
        if dep.startswith("-e"):
            continue
        name, spec = _split(dep)
        found[name] = spec
    assert found == wanted
    assert "-e ." in pip_section  # Binder installs bpviz itself from the checkout


def test_ci_runs_the_test_command_from_readme():
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    assert "bash bin/test" in readme and "bash bin/app" in readme
    assert "bash bin/test" in ci
