"""The folders are the architecture: Squeezer's modules import downward only, through the layers below, and no
import loop exists — imports inside functions and under ``TYPE_CHECKING`` counted (read from the source, not run)."""

from __future__ import annotations

import ast
from pathlib import Path

from conftest import REPO

#: The layers, lowest first: a module may import its own layer's modules and those of the layers below.
LAYERS = [
    ["squeezer.spaces"],
    ["squeezer.compressors"],
    ["squeezer.search.errors", "squeezer.search.defaults", "squeezer.search.locking", "squeezer.search.hardware"],
    ["squeezer.search.data"],
    ["squeezer.search.models"],
    ["squeezer.search.runtime"],
    ["squeezer.search.config"],
    ["squeezer.search.trial"],
    ["squeezer.search.results"],
    ["squeezer.search.study"],
    ["squeezer.search.backends"],
    ["squeezer.search.cli", "squeezer.search.api", "squeezer.search"],
]
FOLDERS = {"search": "squeezer.search", "spaces": "squeezer.spaces", "compressors": "squeezer.compressors"}


def modules() -> dict[str, Path]:
    found = {}
    for folder, package in FOLDERS.items():
        for path in (REPO / folder).rglob("*.py"):
            parts = [package, *path.relative_to(REPO / folder).with_suffix("").parts]
            found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def imports(path: Path, known: set[str]) -> set[str]:
    """The Squeezer modules ``path`` names in an import statement anywhere in it (``from package import module``
    names the module; ``from module import name`` the module)."""
    named = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            named |= {alias.name for alias in node.names if alias.name in known}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:
                target = f"{node.module}.{alias.name}"
                named.add(target if target in known else node.module)
    return named & known


def layer(module: str) -> int:
    matches = [(len(prefix), rank) for rank, prefixes in enumerate(LAYERS) for prefix in prefixes
               if module == prefix or module.startswith(prefix + ".")]
    assert matches, f"{module} belongs to no layer: add it to LAYERS"
    return max(matches)[1]


def graph() -> dict[str, set[str]]:
    known = modules()
    return {module: imports(path, set(known)) - {module} for module, path in known.items()}


def test_every_import_points_down_the_layers() -> None:
    upward = sorted(f"{module} -> {target}" for module, targets in graph().items() for target in targets
                    if layer(target) > layer(module))
    assert upward == []


def test_no_module_imports_itself_through_others() -> None:
    edges = graph()
    loops, state = [], {}

    def visit(module: str, path: list[str]) -> None:
        state[module] = "open"
        for target in sorted(edges[module]):
            if state.get(target) == "open":
                loops.append(" -> ".join(path[path.index(target):] + [target]))
            elif target not in state:
                visit(target, path + [target])
        state[module] = "done"

    for module in sorted(edges):
        if module not in state:
            visit(module, [module])
    assert loops == []


def test_the_layers_name_every_package() -> None:
    for module in modules():
        layer(module)  # raises for a module no layer names
