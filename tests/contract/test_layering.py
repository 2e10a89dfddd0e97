"""The layering holds: no import cycle, no upward import, no tool importing another tool.

Every ``insilico/**/*.py`` is parsed with :mod:`ast`; module-level,
function-local and ``if TYPE_CHECKING`` imports count alike, relative and
absolute, and so does ``importlib.import_module("insilico...")`` with a
literal name. Importing ``insilico.a.b`` runs ``insilico/a/__init__.py``
first, so it counts as an import of the package too (except the lazy
package root). The rows are :mod:`insilico.layering`'s table.
"""
from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import pytest
import torch

from insilico import layering

PACKAGE = Path(__file__).resolve().parents[2] / "insilico"


def _modules() -> dict[str, Path]:
    """Dotted module name -> file, for every module of the package (a package by its ``__init__.py``)."""
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = ["insilico", *path.relative_to(PACKAGE).with_suffix("").parts]
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(parts)] = path
    return found


MODULES = _modules()


def _existing(name: str) -> str:
    """The module ``name`` is, or the package it is an attribute of (``insilico.models._REGISTRY``)."""
    while name not in MODULES:
        name = name.rpartition(".")[0]
    return name


def _targets(module: str, node: ast.AST) -> list[str]:
    """The insilico modules one import statement (or literal ``import_module`` call) reads."""
    is_package = MODULES[module].name == "__init__.py"
    if isinstance(node, ast.Import):
        return [a.name for a in node.names if a.name.split(".")[0] == "insilico"]
    if isinstance(node, ast.Call):
        return [node.args[0].value] if node.args[0].value.split(".")[0] == "insilico" else []
    if node.level:
        base = module if is_package else module.rpartition(".")[0]
        for _ in range(node.level - 1):
            base = base.rpartition(".")[0]
        base = f"{base}.{node.module}" if node.module else base
    else:
        base = node.module or ""
    if base.split(".")[0] != "insilico":
        return []
    return [f"{base}.{a.name}" if f"{base}.{a.name}" in MODULES else base for a in node.names]


def _is_import(node: ast.AST) -> bool:
    if isinstance(node, (ast.Import, ast.ImportFrom)):
        return True
    return (isinstance(node, ast.Call) and ast.unparse(node.func) in ("importlib.import_module", "import_module")
            and len(node.args) == 1 and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str))


def _edges() -> list[tuple[str, str, str]]:
    """Every (importer, imported, "file:line"), with the packages an import initialises."""
    edges = []
    for module, path in MODULES.items():
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if not _is_import(node):
                continue
            where = f"{path.relative_to(PACKAGE.parent)}:{node.lineno}"
            for target in map(_existing, _targets(module, node)):
                # the packages above the target run first, unless the importer is already inside them
                parts = target.split(".")
                parents = {".".join(parts[:n]) for n in range(2, len(parts))}
                edges += [(module, name, where) for name in sorted(parents)
                          if not (module + ".").startswith(name + ".")]
                if target != module:
                    edges.append((module, target, where))
    return edges


EDGES = _edges()


def _cycles() -> list[tuple[list[str], list[str]]]:
    """The strongly connected components of more than one module (Tarjan): (one cycle through it, its modules)."""
    graph: dict[str, set[str]] = {m: set() for m in MODULES}
    for a, b, _ in EDGES:
        graph[a].add(b)
    index, low, stack, on, components = {}, {}, [], set(), []

    def visit(v):  # recursion depth is bounded by the number of modules (~150)
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                components.append((_one_cycle(graph, set(component)), sorted(component)))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return components


def _one_cycle(graph, component: set[str]) -> list[str]:
    """A shortest cycle through the first module of a component (breadth-first), as a closed path."""
    start = min(component)
    parents, frontier = {start: None}, [start]
    while frontier:
        following = []
        for v in frontier:
            for w in sorted(graph[v] & component):
                if w == start:
                    path = [v]
                    while parents[path[-1]] is not None:
                        path.append(parents[path[-1]])
                    return [start, *reversed(path[:-1]), start]
                if w not in parents:
                    parents[w] = v
                    following.append(w)
        frontier = following
    return sorted(component)


def _where(a: str, b: str) -> str:
    return ", ".join(sorted({w for x, y, w in EDGES if (x, y) == (a, b)}))


def test_every_module_has_a_row():
    missing = []
    for module in MODULES:
        try:
            layering.row(module)
        except Exception as e:
            missing.append(str(e))
    assert not missing, "\n".join(missing)


def test_no_import_cycle():
    cycles = _cycles()
    report = [f"  {' -> '.join(c)}\n    at {'; '.join(_where(a, b) for a, b in zip(c, c[1:]))}"
              + (f"\n    (one cycle of several among {len(members)} modules: {', '.join(members)})"
                 if len(members) > 2 else "")
              for c, members in cycles]
    assert not cycles, f"{len(cycles)} import cycle(s):\n" + "\n".join(report)


def test_no_upward_import():
    rank = {m: layering.ROWS.index(layering.row(m)) for m in MODULES}
    upward = sorted({f"{w}: {a} ({layering.row(a)}) imports {b} ({layering.row(b)})"
                     for a, b, w in EDGES if rank[b] > rank[a]})
    assert not upward, f"{len(upward)} upward import(s):\n" + "\n".join(upward)


def _may_import_tool(a: str, b: str) -> bool:
    """Tools-row module ``a`` may import tools-row module ``b``: the same tool, a kit of its package, or a face."""
    ta, tb = layering.tool(a), layering.tool(b)
    if ta == tb or (ta.startswith(tb + ".") and tb in MODULES and MODULES[tb].name == "__init__.py"):
        return True  # its own tool, or its package's kit / its package's face
    return MODULES[a].name == "__init__.py" and b.startswith(a + ".")  # a package's face re-exports its tools


def test_tools_never_import_sibling_tools():
    tools = {m for m in MODULES if layering.row(m) == "tools"}
    crossing = sorted({f"{w}: {a} imports {b}" for a, b, w in EDGES
                       if a in tools and b in tools and not _may_import_tool(a, b)})
    assert not crossing, f"{len(crossing)} tool(s) importing another tool:\n" + "\n".join(crossing)


@pytest.mark.parametrize("source, finds", [
    ("from ..recording import Recording", "insilico.recording"),
    ("def f():\n    from insilico.design import mad", "insilico.design.mad"),
    ("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from ..probe import Probe", "insilico.probe"),
    ("import importlib\nimportlib.import_module('insilico.gallery.build')", "insilico.gallery.build"),
])
def test_the_parser_sees_every_kind_of_import(source, finds):
    module = "insilico.objectives.core"
    found = {t for node in ast.walk(ast.parse(source)) if _is_import(node) for t in _targets(module, node)}
    assert finds in {_existing(t) for t in found}


@pytest.mark.parametrize("a, b, allowed", [
    ("insilico.design.mad", "insilico.design.controversial", False),  # a sibling tool
    ("insilico.experiments.dynamics", "insilico.experiments.lesions", False),
    ("insilico.experiments.runs", "insilico.experiments.tuning", False),  # a kit never imports a tool
    ("insilico.design.metamers", "insilico.design.metamer_result", True),  # the tool's own result
    ("insilico.design.metamer_result", "insilico.design.metamer_validity", True),  # companions of one tool
    ("insilico.experiments.dynamics", "insilico.experiments.runs", True),  # its package's kit
    ("insilico.experiments", "insilico.experiments.tuning", True),  # the package's face
])
def test_sibling_tools_are_told_from_companions_and_kits(a, b, allowed):
    assert _may_import_tool(a, b) is allowed


def test_a_cycle_and_an_upward_import_are_found(monkeypatch):
    monkeypatch.setitem(globals(), "EDGES", [
        ("insilico.units", "insilico.probe", "insilico/units.py:1"),
        ("insilico.probe", "insilico.units", "insilico/probe.py:1")])
    assert _cycles() == [(["insilico.probe", "insilico.units", "insilico.probe"], ["insilico.probe", "insilico.units"])]
    with pytest.raises(AssertionError, match=r"units.py:1: insilico.units \(foundations\) imports insilico.probe"):
        test_no_upward_import()


def test_files_saved_before_encoding_became_a_package_still_load(tmp_path):
    """Results and predictors record their class path; the ones saved as insilico.encoding / insilico.predictor load."""
    from insilico import load, persistence
    from insilico.encoding import Ceiling, NeuralPredictor, split_half_ceiling

    ceiling = split_half_ceiling(np.random.default_rng(0).normal(size=(4, 6, 3)), n_splits=2)
    ceiling.save(tmp_path / "c.pt")
    blob = torch.load(tmp_path / "c.pt", weights_only=True)
    assert blob["kind"] == "insilico.encoding.ridge:Ceiling"
    torch.save({**blob, "kind": "insilico.encoding:Ceiling"}, tmp_path / "old.pt")
    back = load(tmp_path / "old.pt")
    assert isinstance(back, Ceiling) and np.array_equal(back.reliability, ceiling.reliability)

    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU())
    predictor = NeuralPredictor(net, ["1"], "mean", 4, ["a", "b"], (3, 8, 8))
    predictor.save(tmp_path / "p.pt")
    blob = torch.load(tmp_path / "p.pt", weights_only=True)
    torch.save({**blob, "kind": "insilico.predictor:NeuralPredictor"}, tmp_path / "old_p.pt")
    x = torch.rand(2, 3, 8, 8)
    assert torch.equal(NeuralPredictor.load(tmp_path / "old_p.pt", net)(x), predictor(x))
    assert "insilico.predictor:NeuralPredictor" not in persistence.KINDS  # a predictor file is not a result
