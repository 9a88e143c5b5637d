"""The package's shape, computed from the source: no class over 300 lines; no import cycles; the
SimPy model (``simulator``), ``algorithms`` and ``devices`` never import the application in
``edgefed/`` (``edgefed.streams``, a leaf, aside); the simulator sees the learning only through its
contract (``algorithms/message.py``, ``work.py``); ``algorithms`` never imports ``simulator``;
importing a part of edgefed does not import its API.

Every import counts, those inside functions too (PEP 562's ``__getattr__`` included): a lazy import
still runs when it is reached. ``from edgefed import x`` is an edge to ``edgefed/__init__.py``
(that is where ``x`` is looked up) and, when ``x`` is a module, to that module."""
import ast
import subprocess
import sys

import networkx as nx

from tests.conftest import REPO

# repository folder -> the package it installs as (pyproject.toml's package-dir)
PACKAGES = {"edgefed": "edgefed", "simulator": "edgefed.simulator", "algorithms": "edgefed.algorithms",
            "devices": "edgefed.devices"}


def module_names(root=REPO) -> dict[str, object]:
    return {(package if path.stem == "__init__" else f"{package}.{path.stem}"): path
            for folder, package in PACKAGES.items() for path in sorted((root / folder).glob("*.py"))}


def import_graph(root=REPO) -> nx.DiGraph:
    modules = module_names(root)
    graph = nx.DiGraph()
    graph.add_nodes_from(modules)
    for name, path in modules.items():
        package = name if path.stem == "__init__" else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:  # relative: resolved against this module's package
                    anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join(anchor + ([base] if base else []))
                targets = [base, *(f"{base}.{alias.name}" for alias in node.names)]
            elif isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            else:
                continue
            graph.add_edges_from((name, t) for t in targets if t in modules and t != name)
    return graph


def test_no_import_cycles():
    cycles = list(nx.simple_cycles(import_graph()))
    assert cycles == [], "import cycles: " + "; ".join(" -> ".join(c + c[:1]) for c in cycles)


LAYERS = ("edgefed.simulator", "edgefed.algorithms", "edgefed.devices")


def application(module: str) -> bool:
    return module == "edgefed" or (module.startswith("edgefed.") and not module.startswith(LAYERS)
                                   and module != "edgefed.streams")


def test_the_model_layers_never_import_the_application():
    bad = [(a, b) for a, b in import_graph().edges if a.startswith(LAYERS) and application(b)]
    assert bad == []


def test_streams_is_a_leaf():
    assert [b for a, b in import_graph().edges if a == "edgefed.streams"] == []


CONTRACT = {"edgefed.algorithms.message", "edgefed.algorithms.work"}


def test_the_simulator_sees_the_learning_only_through_the_contract():
    """The engine takes its own inputs (``simulator/inputs.py``): of ``algorithms`` it imports the
    torch-free message and work types alone, and nothing of the scenario or the builders."""
    bad = [(a, b) for a, b in import_graph().edges if a.startswith("edgefed.simulator")
           and b.startswith("edgefed.algorithms") and b not in CONTRACT]
    assert bad == []


def test_algorithms_never_import_the_simulator():
    bad = [(a, b) for a, b in import_graph().edges
           if a.startswith("edgefed.algorithms") and b.startswith("edgefed.simulator")]
    assert bad == []


def test_the_rooms_hold_what_they_say():
    """The application lives in edgefed/, the SimPy model in simulator/ (a new module goes where it
    belongs, and this list says so)."""
    names = set(module_names())
    assert {n for n in names if n.startswith("edgefed.simulator.")} == {
        f"edgefed.simulator.{m}" for m in
        ("asynchronous", "closing", "costs", "edge", "energy", "engine", "fleet", "host", "inputs", "network",
         "radio", "records", "schedule", "session", "solo", "thermal", "topology")}
    assert {"edgefed.cli", "edgefed.api", "edgefed.scenario", "edgefed.build", "edgefed.runner",
            "edgefed.results"} <= names


MAX_CLASS_LINES = 300


def test_no_class_is_over_300_lines():
    """A class a reader must hold at once stays short: the engines compose their pieces
    (``simulator.session``, ``host``, ``edge``) instead of growing."""
    sizes = {f"{name}.{node.name}": node.end_lineno - node.lineno + 1 for name, path in module_names().items()
             for node in ast.walk(ast.parse(path.read_text())) if isinstance(node, ast.ClassDef)}
    assert {name: n for name, n in sizes.items() if n > MAX_CLASS_LINES} == {}


def test_no_module_imports_from_the_package_root():
    """``from edgefed import x`` goes through the root's lazy ``__getattr__``; modules name what
    they use (``from edgefed.streams import Stream``)."""
    graph = import_graph()
    assert sorted(a for a, b in graph.edges if b == "edgefed") == []


def test_the_graph_sees_imports_inside_functions_and_the_package_root(tmp_path):
    for folder in PACKAGES:
        (tmp_path / folder).mkdir()
    (tmp_path / "simulator" / "a.py").write_text("from edgefed.simulator.b import x\n")
    (tmp_path / "simulator" / "b.py").write_text("def f():\n    from edgefed.simulator import a\n")
    assert list(nx.simple_cycles(import_graph(tmp_path))) != []
    (tmp_path / "simulator" / "b.py").write_text("from edgefed import run\n")
    (tmp_path / "edgefed" / "__init__.py").write_text("def __getattr__(name):\n    import edgefed.api\n")
    (tmp_path / "edgefed" / "api.py").write_text("from edgefed.simulator import a\n")
    graph = import_graph(tmp_path)
    assert graph.has_edge("edgefed.simulator.b", "edgefed") and graph.has_edge("edgefed", "edgefed.api")
    assert list(nx.simple_cycles(graph)) != []


def test_importing_the_engine_does_not_import_the_api():
    code = "import sys, edgefed.simulator.engine; print('edgefed.api' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "False"
