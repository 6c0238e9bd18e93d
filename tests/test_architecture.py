"""The layout's promises: one import name, imports only downward, no cycles, small modules."""

from __future__ import annotations

import ast
import tomllib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# Folder at the repository root -> its name inside the ``brainrank`` package.
FOLDERS = {
    "brainrank": "brainrank",
    "index": "brainrank.index",
    "ranker": "brainrank.ranker",
    "debugger_ui": "brainrank.debugger_ui",
}
# Which top-level parts each part may import (``brainrank`` itself re-exports the public API).
ALLOWED = {
    "brainrank.index": {"brainrank.index"},
    "brainrank.ranker": {"brainrank.index", "brainrank.ranker"},
    "brainrank.debugger_ui": {"brainrank.index", "brainrank.ranker", "brainrank.debugger_ui"},
}
MAX_LINES = 450
HEAVY = ("tensorflow", "tensorflow_ranking", "faiss", "bm25s", "shap", "streamlit", "keras", "ray")


def _modules() -> dict[str, Path]:
    out = {}
    for folder, package in FOLDERS.items():
        for path in sorted((REPO / folder).rglob("*.py")):
            rel = path.relative_to(REPO / folder).with_suffix("")
            parts = [p for p in rel.parts if p != "__init__"]
            out[".".join([package, *parts])] = path
    return out


MODULES = _modules()


def _part(module: str) -> str:
    return ".".join(module.split(".")[:2]) if module != "brainrank" else module


def _imports(module: str, path: Path, *, top_level_only: bool) -> set[str]:
    """The brainrank modules ``module`` imports (resolved to modules that exist)."""
    tree = ast.parse(path.read_text(), str(path))
    nodes = tree.body if top_level_only else list(ast.walk(tree))
    found = set()
    is_package = path.name == "__init__.py"
    for node in nodes:
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = module.split(".")
                anchor = anchor[: len(anchor) - node.level + (1 if is_package else 0)]
                base = ".".join(anchor + ([base] if base else []))
            names = [base] + [f"{base}.{a.name}" for a in node.names]
        else:
            continue
        for name in names:
            while name and name not in MODULES:
                name = name.rpartition(".")[0]
            if name and name.startswith("brainrank") and name != module:
                found.add(name)
    return found


def test_every_package_folder_is_installed():
    meta = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert meta["package-dir"] == {v: k for k, v in FOLDERS.items()}
    packages = {m for m, p in MODULES.items() if p.name == "__init__.py"}
    assert set(meta["packages"]) == packages


@pytest.mark.parametrize("module", sorted(m for m in MODULES if _part(m) in ALLOWED))
def test_imports_only_go_downward(module):
    part = _part(module)
    upward = {
        m
        for m in _imports(module, MODULES[module], top_level_only=False)
        if _part(m) not in ALLOWED[part]
    }
    assert not upward, f"{module} imports from a higher layer: {sorted(upward)}"


def test_no_circular_imports():
    graph = {m: _imports(m, p, top_level_only=True) for m, p in MODULES.items()}
    state: dict[str, str] = {}

    def visit(m: str, path: list[str]) -> None:
        state[m] = "open"
        for n in sorted(graph[m]):
            if state.get(n) == "open":
                cycle = path[path.index(n) :] + [n]
                pytest.fail("circular import: " + " -> ".join(cycle))
            if n not in state:
                visit(n, [*path, n])
        state[m] = "done"

    for m in sorted(graph):
        if m not in state:
            visit(m, [m])


@pytest.mark.parametrize("module", sorted(MODULES))
def test_modules_stay_small(module):
    lines = len(MODULES[module].read_text().splitlines())
    assert lines <= MAX_LINES, f"{module} has {lines} lines; split it (limit {MAX_LINES})"


@pytest.mark.parametrize(
    "module",
    [
        "brainrank.ranker.config",
        "brainrank.index.records",
        "brainrank.index.params",
        "brainrank.index.errors",
    ],
)
def test_light_modules_import_no_heavy_library(module):
    """Config, parameters and records load in milliseconds: nothing heavy at import time."""
    seen = set()
    todo = [module]
    while todo:
        m = todo.pop()
        if m in seen:
            continue
        seen.add(m)
        tree = ast.parse(MODULES[m].read_text())
        for node in tree.body:
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            else:
                continue
            for name in names:
                assert name.split(".")[0] not in HEAVY, f"{m} imports {name} at module level"
        todo.extend(_imports(m, MODULES[m], top_level_only=True))
