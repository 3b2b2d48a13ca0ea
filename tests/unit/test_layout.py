"""The house: each room of monitor/ imports only the rooms before it (the README's layout)."""

import ast
import re
from pathlib import Path

import pytest
from radon.complexity import cc_visit

from kcmp_monitor.flags import FLAGS
from tests.helpers import ROOT

PACKAGE = ROOT / "monitor"
CORE = {"abi", "errors", "escape", "caps", "memo", "flags", "schema", "yamlfile", "ratelimit"}
# room -> the rooms it may import (besides the core and itself)
ALLOWED = {
    "core": set(),
    "policy": set(),
    "kernel": {"policy"},
    "context": {"kernel", "policy"},
    "detect": {"kernel", "context", "policy"},
    "sinks": {"kernel", "context", "detect", "policy"},
    "exporter": {"kernel"},
    "probe": {"context", "sinks"},
    "trace": {"kernel", "context", "detect", "sinks"},
    "plan": {"kernel", "sinks", "exporter"},
    "wiring": {"kernel", "context", "detect", "sinks", "exporter", "trace", "plan", "policy"},
    "parsers": {"kernel", "sinks", "exporter", "policy"},
    "replay": {"detect", "sinks"},
    "cli": {"kernel", "context", "detect", "sinks", "exporter", "probe", "trace", "plan",
            "wiring", "parsers", "replay"},
}
# The boundary: the only modules that know argparse or write a flag's spelling.
BOUNDARY = {"cli.py", "parsers.py", "flags.py"}
MOST_LINES = 400
MOST_COMPLEXITY = 20  # radon's grade C at most


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


MODULES = sorted(PACKAGE.rglob("*.py"))


def _name(path):
    return str(path.relative_to(PACKAGE))


@pytest.mark.parametrize("path", MODULES, ids=_name)
def test_only_the_boundary_knows_the_flags(path):
    """Below cli.py no module imports argparse or spells a flag: messages take it from
    flags.FLAGS."""
    if _name(path) in BOUNDARY:
        return
    tree = ast.parse(path.read_text())
    imported = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    assert "argparse" not in imported
    docstrings = {id(node.body[0].value) for node in ast.walk(tree)
                  if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef))
                  and node.body and isinstance(node.body[0], ast.Expr)}
    spelled = {flag for node in ast.walk(tree) if isinstance(node, ast.Constant)
               and isinstance(node.value, str) and id(node) not in docstrings
               for flag in FLAGS.values()
               if re.search(re.escape(flag) + r"(?![\w.=-])", node.value)}
    assert not spelled


@pytest.mark.parametrize("path", MODULES, ids=_name)
def test_modules_are_small_and_functions_simple(path):
    text = path.read_text()
    assert text.count("\n") <= MOST_LINES
    complex_ = {f"{block.name}: {block.complexity}" for block in cc_visit(text)
                if block.complexity > MOST_COMPLEXITY}
    assert not complex_


def test_the_readme_names_every_module_and_bpf_file():
    """How it fits together: its table names each file of monitor/ and bpf/ (a folder's row
    may name its files by their own names)."""
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("## How it fits together"):readme.index("## Development")]
    files = [p for p in (*MODULES, *(ROOT / "bpf").glob("*.[ch]"))
             if p.name != "__init__.py" and "signatures" not in p.parts]
    assert [str(p.relative_to(ROOT)) for p in files if f"{p.stem}." not in section
            and f"`{p.name}`" not in section] == []


def test_every_package_is_installed():
    """pyproject.toml lists the packages one by one: a folder left out installs in editable
    mode (by path) but not in the image or a wheel."""
    listed = re.search(r"^packages = \[(.*?)\]", (ROOT / "pyproject.toml").read_text(),
                       re.S | re.M)[1]
    packages = {".".join(("kcmp_monitor",) + p.parent.relative_to(PACKAGE).parts)
                for p in PACKAGE.rglob("__init__.py")}
    assert packages <= set(re.findall(r'"([\w.]+)"', listed))
