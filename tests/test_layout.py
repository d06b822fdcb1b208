"""olmirror's layout: packages by domain, each importing only itself and lower layers, no
import cycle, no module over 400 lines. `python3 tests/test_layout.py` prints the graph."""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent / "olmirror"
MAX_LINES = 400
# Lowest first. A module imports modules of its own package, or of a lower layer.
LAYERS = (
    ("base", "olmirror", "olmirror.errors", "olmirror.progress"),
    ("remote", "olmirror.remote"),  # runs on hosts: standard library only
    ("spec", "olmirror.spec"),
    ("connection", "olmirror.connection"),
    ("resources", "olmirror.resources"),
    ("lock", "olmirror.lock"),
    ("mirror", "olmirror.mirror"),
    ("serve", "olmirror.serve"),
    ("openlambda", "olmirror.openlambda"),
    ("commands", "olmirror"),  # the rest of the top level: plan, apply, cli...
)


def modules() -> dict[str, Path]:
    found = {}
    for path in sorted(ROOT.rglob("*.py")):
        parts = path.relative_to(ROOT.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = path
    return found


def imports(path: Path, known: dict[str, Path]) -> Iterator[str]:
    """The olmirror modules `path` imports, wherever the import is (functions included)."""
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:
                full = f"{node.module}.{alias.name}"
                yield full if full in known else node.module
        elif isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)


def graph() -> dict[str, set[str]]:
    known = modules()
    return {
        name: {i for i in imports(path, known) if i in known and i != name}
        for name, path in known.items()
    }


def layer(module: str) -> tuple[int, str]:
    """(rank, package) of a module: the most specific layer that holds it."""
    for rank, (label, *prefixes) in enumerate(LAYERS):
        if module in prefixes or any(
            p != "olmirror" and module.startswith(p + ".") for p in prefixes
        ):
            return rank, label
    return len(LAYERS) - 1, "commands"


def test_no_module_imports_a_higher_layer() -> None:
    wrong = [
        f"{a} ({layer(a)[1]}) imports {b} ({layer(b)[1]})"
        for a, targets in graph().items()
        for b in targets
        if layer(b)[0] > layer(a)[0]
    ]
    assert wrong == []


def test_remote_programs_import_nothing_of_olmirror_but_each_other() -> None:
    """They run on hosts where olmirror is not installed; one that needs another is sent
    after it (`remote.source`), and imports it only when run here."""
    wrong = [
        f"{a} imports {b}"
        for a, targets in graph().items()
        if a.startswith("olmirror.remote.")
        for b in targets
        if not b.startswith("olmirror.remote.")
    ]
    assert wrong == []


def test_no_import_cycle() -> None:
    edges = graph()
    state: dict[str, int] = {}  # 1: on the path, 2: done

    def visit(node: str, path: list[str]) -> list[str] | None:
        state[node] = 1
        for nxt in sorted(edges[node]):
            if state.get(nxt) == 1:
                return [*path, node, nxt]
            if nxt not in state and (cycle := visit(nxt, [*path, node])):
                return cycle
        state[node] = 2
        return None

    for start in sorted(edges):
        if start not in state and (cycle := visit(start, [])):
            raise AssertionError(" -> ".join(cycle[cycle.index(cycle[-1]) :]))


def test_every_package_says_what_lives_in_it_and_no_module_is_too_long() -> None:
    packages = [p for p in ROOT.rglob("__init__.py") if p.parent != ROOT]
    undocumented = [str(p) for p in packages if not ast.get_docstring(ast.parse(p.read_text()))]
    assert undocumented == []
    long = {
        str(p.relative_to(ROOT.parent)): n
        for p in modules().values()
        if (n := len(p.read_text().splitlines())) > MAX_LINES
    }
    assert long == {}


if __name__ == "__main__":
    for name, targets in sorted(graph().items()):
        print(f"{name} [{layer(name)[1]}] -> {', '.join(sorted(targets)) or '-'}")
    sys.exit(0)
