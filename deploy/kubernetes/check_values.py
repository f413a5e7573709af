"""Check values.yaml against a Zero to JupyterHub chart's schema without Helm: the chart's own
values.yaml with ours merged over it (as Helm merges them), validated against the chart's
values.schema.yaml, the check `helm install` makes first.

Usage: python deploy/kubernetes/check_values.py CHART_DIR  (the jupyterhub/ folder of a checkout of
github.com/jupyterhub/zero-to-jupyterhub-k8s); prints each error and exits 1 if there is one."""

from __future__ import annotations

import sys
from pathlib import Path

import jsonschema
import yaml

VALUES = Path(__file__).resolve().parent / "values.yaml"


def merged(defaults: dict, ours: dict) -> dict:
    """Helm's merge of user values over a chart's: maps merge key by key, anything else replaces."""
    out = dict(defaults)
    for key, value in ours.items():
        both_maps = isinstance(value, dict) and isinstance(defaults.get(key), dict)
        out[key] = merged(defaults[key], value) if both_maps else value
    return out


def main(chart: Path) -> int:
    schema = yaml.safe_load((chart / "values.schema.yaml").read_text())
    values = merged(yaml.safe_load((chart / "values.yaml").read_text()), yaml.safe_load(VALUES.read_text()))
    errors = list(jsonschema.Draft7Validator(schema).iter_errors(values))
    for error in errors:
        print(f"{'.'.join(map(str, error.path)) or '(top)'}: {error.message}")
    print(f"{VALUES.name} against {chart}: {len(errors)} schema errors")
    return 1 if errors else 0


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__.split("\n\n")[1])
    sys.exit(main(Path(sys.argv[1])))
