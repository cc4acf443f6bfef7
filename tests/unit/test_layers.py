"""The imports of builders/ obey the layer map in ARCHITECTURE.md: downward or sideways, never in a circle."""
from __future__ import annotations

import ast
import importlib
import pkgutil
import re
import sys
from pathlib import Path

import builders

REPO = Path(__file__).resolve().parents[2]
ROW = re.compile(r"^\| (\d) \w+ \| ([a-z_, ]+) \|", re.M)


def layer_map() -> dict[str, int]:
    """module (as named in the table: its top-level name under builders/) -> layer number."""
    rows = ROW.findall((REPO / "ARCHITECTURE.md").read_text())
    return {name.strip(): int(layer) for layer, names in rows for name in names.split(",")}


def every_module() -> list[str]:
    return sorted(m.name for m in pkgutil.walk_packages(builders.__path__, "builders."))


MODULES = set(every_module())


def unit(module: str) -> str:
    """builders.components.cri_o -> components: the name the table gives it."""
    return module.split(".")[1]


def imported_modules(module: str) -> set[str]:
    """Every builders module this one imports, at the top or inside a function (not those under TYPE_CHECKING)."""
    path = Path(importlib.import_module(module).__file__)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    tree = ast.parse(path.read_text())
    for block in [n for n in ast.walk(tree) if isinstance(n, ast.If) and ast.unparse(n.test) == "TYPE_CHECKING"]:
        block.body = []  # imports for annotations only: no module is loaded, nothing can go round in a circle
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("builders.")}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1] + ([base] if base else []))
            if base.startswith("builders"):
                found |= {f"{base}.{a.name}" if f"{base}.{a.name}" in MODULES else base for a in node.names}
    return {m for m in found if m != "builders"}


def graph() -> dict[str, set[str]]:
    """Between units (a package counts as one): who imports whom."""
    edges: dict[str, set[str]] = {}
    for module in every_module():
        edges.setdefault(unit(module), set()).update(unit(m) for m in imported_modules(module) if unit(m) != unit(module))
    return edges


def test_every_module_is_in_the_map_and_the_map_names_no_module_that_is_gone() -> None:
    mapped, present = set(layer_map()), {unit(m) for m in every_module()}
    assert present - mapped == set(), "add these to ARCHITECTURE.md's table"
    assert mapped - present == set(), "ARCHITECTURE.md names modules that are gone"


def test_no_module_imports_from_a_layer_above_its_own() -> None:
    layers = layer_map()
    upward = sorted(f"{a} (layer {layers[a]}) imports {b} (layer {layers[b]})" for a, bs in graph().items() for b in bs if layers[b] > layers[a])
    assert not upward, "imports against ARCHITECTURE.md's layers:\n" + "\n".join(upward)


def test_no_two_modules_import_each_other_even_by_way_of_others() -> None:
    edges = graph()

    def reaches(start: str, goal: str, seen: set[str]) -> bool:
        return any(n == goal or (n not in seen and reaches(n, goal, seen | {n})) for n in edges.get(start, ()))

    circles = sorted(f"{a} -> {b} -> … -> {a}" for a, bs in edges.items() for b in bs if reaches(b, a, {b}))
    assert not circles, "import cycles:\n" + "\n".join(circles)


def test_the_checks_catch_an_import_that_breaks_the_map(tmp_path: Path, monkeypatch) -> None:
    """A module of the base layer that imported the steps layer would be found (so the tests above can fail)."""
    edges = graph()
    monkeypatch.setattr(sys.modules[__name__], "graph", lambda: edges | {"errors": {"tasks"}})
    try:
        test_no_module_imports_from_a_layer_above_its_own()
    except AssertionError as failure:
        assert "errors (layer 1) imports tasks (layer 6)" in str(failure)
    else:
        raise AssertionError("an upward import went unseen")
