"""The house: each room of monitor/ imports only the rooms before it (the README's layout)."""

import ast
from pathlib import Path

import pytest

from tests.helpers import ROOT

PACKAGE = ROOT / "monitor"
CORE = {"abi", "errors", "escape", "caps", "memo"}
# room -> the rooms it may import (besides the core and itself)
ALLOWED = {
    "core": set(),
    "kernel": set(),
    "context": {"kernel"},
    "detect": {"kernel", "context"},
    "sinks": {"kernel", "context", "detect"},
    "exporter": {"kernel"},
    "probe": {"context", "sinks"},
    "trace": {"kernel", "context", "detect", "sinks"},
    "wiring": {"kernel", "context", "detect", "sinks", "exporter", "trace"},
    "cli": {"kernel", "context", "detect", "sinks", "exporter", "probe", "trace", "wiring"},
}


def _room(parts: tuple[str, ...]) -> str:
    head = parts[0]
    return "core" if head in CORE or head == "__init__" else head


def _imports(path: Path):
    """The rooms a module imports, from its relative and kcmp_monitor imports."""
    here = path.relative_to(PACKAGE).with_suffix("").parts
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = here[:len(here) - node.level]
                target = base + tuple(node.module.split(".")) if node.module else base
            elif node.module and node.module.startswith("kcmp_monitor"):
                target = tuple(node.module.split(".")[1:])
            else:
                continue
            if target:
                yield _room(target)
            else:  # `from .. import abi, PROG`: each name is a module or a package fact
                yield from ("core" if a.name in CORE | {"PROG", "__version__"} else a.name
                            for a in node.names)


@pytest.mark.parametrize("path", sorted(PACKAGE.rglob("*.py")),
                         ids=lambda p: str(p.relative_to(PACKAGE)))
def test_imports_point_one_way(path):
    room = _room(path.relative_to(PACKAGE).with_suffix("").parts)
    allowed = ALLOWED[room] | {"core", room}
    assert set(_imports(path)) <= allowed


def test_every_room_is_known():
    rooms = {_room(p.relative_to(PACKAGE).with_suffix("").parts) for p in PACKAGE.rglob("*.py")}
    assert rooms == set(ALLOWED)
