"""The seams between the project's parts, read from the sources with ``ast`` (nothing is imported):

* the engine's modules import each other without a circle, and never the UI (``bpviz.widgets``,
  ipywidgets, plotly, IPython, ...);
* no module uses another module's private (``_name``) functions, methods or attributes;
* bench/ imports nothing from tests/.

Imports inside functions count. Imports under ``if TYPE_CHECKING:`` do not: they never run, so they
cannot close an import circle (a type-only back-reference is a design question, not a crash).
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ENGINE = ROOT / "bpviz"
UI_PACKAGES = {"ipywidgets", "plotly", "IPython", "voila", "anywidget", "jupyterlab", "ipykernel"}
#: (file, private name) -> why it is still used across modules; each entry must still be needed
ALLOWED_PRIVATE: dict[tuple[str, str], str] = {}  # (file, name): why it must stay


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def engine_sources() -> dict[str, tuple[str, bool]]:
    """Engine module -> (its source, whether it is a package's ``__init__``)."""
    return {module_name(p): (p.read_text(), p.name == "__init__.py") for p in sorted(ENGINE.rglob("*.py"))}


def runtime_nodes(tree: ast.AST):
    """Every node of ``tree`` except those under ``if TYPE_CHECKING:``."""
    stack = [tree]
    while stack:
        node = stack.pop()
        yield node
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                stack.extend(child.orelse)
            else:
                stack.append(child)


def imported_names(source: str, module: str, is_package: bool = False) -> set[str]:
    """Absolute dotted names of all the module imports (``from a import b`` gives ``a`` and ``a.b``)."""
    package = module.split(".") if is_package else module.split(".")[:-1]
    names: set[str] = set()
    for node in runtime_nodes(ast.parse(source)):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            source_name = ".".join(base + ([node.module] if node.module else []))
            names.add(source_name)
            names.update(f"{source_name}.{alias.name}" for alias in node.names)
    return names


def import_graph(sources: dict[str, tuple[str, bool]]) -> dict[str, set[str]]:
    """Module -> the modules importing it runs: each named module and the packages on the way to it
    (``bpviz.optim.base`` runs ``bpviz/optim/__init__.py`` first), except the importer's own
    packages, which are already being imported when it runs."""
    graph: dict[str, set[str]] = {}
    for module, (source, is_package) in sources.items():
        parts = module.split(".")
        own = {".".join(parts[:i]) for i in range(1, len(parts) + is_package)}
        targets = set()
        for name in imported_names(source, module, is_package):
            pieces = name.split(".")
            targets.update(".".join(pieces[:i]) for i in range(1, len(pieces) + 1))
        graph[module] = {t for t in targets if t in sources and t not in own and t != module}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str]:
    """One import circle as [a, b, ..., a], or [] when there is none (depth-first search)."""
    state: dict[str, str] = {}
    path: list[str] = []

    def visit(node: str) -> list[str]:
        state[node] = "open"
        path.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == "open":
                return path[path.index(nxt) :] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        state[node] = "done"
        path.pop()
        return []

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return []


def test_the_graph_follows_relative_absolute_function_level_and_package_imports():
    sources = {
        "pkg": ("from .a import f\n", True),
        "pkg.a": ("def f():\n    from .sub.b import g\n", False),
        "pkg.sub": ("", True),
        "pkg.sub.b": ("import typing\nif typing.TYPE_CHECKING:\n    from pkg import c\nfrom ..a import f\n", False),
        "pkg.c": ("import pkg.sub\n", False),
    }
    graph = import_graph(sources)
    assert graph == {
        "pkg": {"pkg.a"},
        "pkg.a": {"pkg.sub", "pkg.sub.b"},
        "pkg.sub": set(),
        "pkg.sub.b": {"pkg.a"},
        "pkg.c": {"pkg.sub"},
    }
    assert find_cycle(graph) == ["pkg.a", "pkg.sub.b", "pkg.a"]
    engine = import_graph(engine_sources())
    assert "bpviz.options" in engine["bpviz.config"] and "bpviz.html_plot" in engine["bpviz.compare"]


def test_the_engine_has_no_import_circle():
    cycle = find_cycle(import_graph(engine_sources()))
    assert not cycle, "import circle: " + " -> ".join(cycle)


def test_the_engine_never_imports_the_ui():
    offenders = []
    for module, (source, is_package) in engine_sources().items():
        for name in imported_names(source, module, is_package):
            if name.split(".")[0] in UI_PACKAGES or name == "bpviz.widgets" or name.startswith("bpviz.widgets."):
                offenders.append(f"{module} imports {name}")
    assert offenders == []


def test_the_options_schema_imports_nothing_of_bpviz_nor_torch():
    """What lets bpviz.config check optimizer options without importing the optimizers."""
    source, _ = engine_sources()["bpviz.options"]
    assert {n.split(".")[0] for n in imported_names(source, "bpviz.options")} <= {
        "__future__",
        "math",
        "dataclasses",
        "typing",
    }


# --- private names -----------------------------------------------------------------------------
def is_private(name: str) -> bool:
    return len(name) > 1 and name.startswith("_") and not name.startswith("__")


def private_definitions(tree: ast.AST) -> set[str]:
    """Private names a module defines: functions, classes, variables, attributes (``self._x = ...``)."""
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            names.add(node.id)
        elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
            names.add(node.attr)
    return {n for n in names if is_private(n)}


def cross_module_private_uses(sources: dict[str, str]) -> dict[tuple[str, str], list[str]]:
    """(file, name) -> the places where that file uses a private name that another of the ``sources``
    (file -> text) defines and it does not: ``obj._name`` on anything but ``self``/``cls``, or
    ``from module import _name``. Names defined nowhere in them (torch's ``_foreach_mul_``) are not ours."""
    trees = {f: ast.parse(text) for f, text in sources.items()}
    defined = {f: private_definitions(t) for f, t in trees.items()}
    ours = set().union(*defined.values())
    uses: dict[tuple[str, str], list[str]] = {}
    for f, tree in trees.items():
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and not (
                isinstance(node.value, ast.Name) and node.value.id in ("self", "cls")
            ):
                found = [(node.attr, ast.unparse(node))]
            elif isinstance(node, ast.ImportFrom):
                found = [(a.name, f"from {'.' * node.level}{node.module or ''} import {a.name}") for a in node.names]
            else:
                continue
            for name, text in found:
                if is_private(name) and name in ours and name not in defined[f]:
                    uses.setdefault((f, name), []).append(f"{f}:{node.lineno} {text}")
    return uses


def test_the_private_name_scan_finds_cross_module_uses_only():
    sources = {
        "a.py": "class B:\n    def _m(self):\n        return self._m, self.other._m\n_k = 1\n",
        "b.py": "from .a import _m, _k\ndef f(b):\n    return b._m(), b._unknown, torch._foreach_mul_\n",
    }
    assert cross_module_private_uses(sources) == {
        ("b.py", "_m"): ["b.py:1 from .a import _m", "b.py:3 b._m"],
        ("b.py", "_k"): ["b.py:1 from .a import _k"],
    }


def test_no_module_uses_another_modules_private_names():
    files = sorted([*ENGINE.rglob("*.py"), *(ROOT / "bench").glob("*.py")])
    uses = cross_module_private_uses({str(p.relative_to(ROOT)): p.read_text() for p in files})
    unexpected = [line for key, lines in uses.items() if key not in ALLOWED_PRIVATE for line in lines]
    assert unexpected == [], "private names used across modules (make them public):\n" + "\n".join(unexpected)
    stale = sorted(set(ALLOWED_PRIVATE) - set(uses))
    assert stale == [], f"no longer used: remove them from ALLOWED_PRIVATE (and any alias kept for them): {stale}"


# --- bench/ and tests/ -------------------------------------------------------------------------
def test_bench_imports_nothing_from_tests():
    test_modules = {p.stem for p in (ROOT / "tests").rglob("*.py")}
    offenders = []
    for path in sorted((ROOT / "bench").glob("*.py")):
        tree = ast.parse(path.read_text())
        for name in imported_names(path.read_text(), module_name(path)):
            if name.split(".")[0] in test_modules | {"tests"}:
                offenders.append(f"{path.name} imports {name}")
        if any(isinstance(n, ast.Constant) and n.value == "tests" for n in ast.walk(tree)):
            offenders.append(f"{path.name} builds a path into tests/")
    assert offenders == []
