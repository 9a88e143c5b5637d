"""The package's import graph, computed from the source (imports inside functions count): no cycles,
and ``algorithms`` never imports ``simulator``."""
import ast

import networkx as nx

from tests.conftest import REPO

FOLDERS = ("simulator", "algorithms", "devices")


def import_graph(root=REPO) -> nx.DiGraph:
    modules = {f"{folder}.{path.stem}": path for folder in FOLDERS for path in sorted((root / folder).glob("*.py"))}
    graph = nx.DiGraph()
    graph.add_nodes_from(modules)
    for name, path in modules.items():
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.ImportFrom) and node.module:
                base = node.module.removeprefix("edgefed.")
                targets = [base, *(f"{base}.{alias.name}" for alias in node.names)]
            elif isinstance(node, ast.Import):
                targets = [alias.name.removeprefix("edgefed.") for alias in node.names]
            else:
                continue
            graph.add_edges_from((name, t) for t in targets if t in modules and t != name)
    return graph


def test_no_import_cycles():
    cycles = list(nx.simple_cycles(import_graph()))
    assert cycles == [], "import cycles: " + "; ".join(" -> ".join(c + c[:1]) for c in cycles)


def test_algorithms_never_import_the_simulator():
    bad = [(a, b) for a, b in import_graph().edges if a.startswith("algorithms.") and b.startswith("simulator.")]
    assert bad == []


def test_the_graph_sees_imports_inside_functions(tmp_path):
    for folder in FOLDERS:
        (tmp_path / folder).mkdir()
    (tmp_path / "simulator" / "a.py").write_text("from edgefed.simulator.b import x\n")
    (tmp_path / "simulator" / "b.py").write_text("def f():\n    from edgefed.simulator import a\n")
    assert list(nx.simple_cycles(import_graph(tmp_path))) != []
