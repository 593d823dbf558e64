"""The layering in docs/ARCHITECTURE.md holds: each part of wanmock imports only what its allow-list names.

A part is a package or sub-package (`wanmock.schemas`, `wanmock.mockserver`, `wanmock.contracts.client`, ...).
Its modules may import the standard library, the part's own modules, and the names in ALLOWED; anything else
(a third-party library or another wanmock part) is a violation. No module imports a generic top-level name
such as `schemas`, `contracts` or `mockserver`: everything of wanmock lives under `wanmock.`.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
STDLIB = set(sys.stdlib_module_names) | {"__future__"}

# part -> (its directory, what it may import besides the standard library and itself)
ALLOWED: dict[str, tuple[str, set[str]]] = {
    "wanmock.schemas": ("schemas", {"jsonschema", "referencing", "jsonschema_rs"}),
    "wanmock.mockserver": (
        "mockserver",
        {"wanmock.schemas", "starlette", "uvicorn", "av", "redis", "uvloop", "httptools", "orjson"},
    ),
    "wanmock.contracts.client": ("contracts/client", {"wanmock.schemas", "httpx"}),
    "wanmock.contracts.tools": (
        "contracts/tools",
        {"wanmock.schemas", "wanmock.contracts.client", "wanmock.mockserver", "httpx", "starlette", "uvicorn"},
    ),
    "wanmock.contracts.testing": (
        "contracts/testing",
        {
            "wanmock.schemas",
            "wanmock.contracts.client",
            "wanmock.contracts.tools",
            "wanmock.mockserver",
            "httpx",
            "hypothesis",
            "pytest",
            "_pytest",
            "starlette",
        },
    ),
    "wanmock.contracts": (
        "contracts",
        {
            "wanmock.schemas",
            "wanmock.contracts.client",
            "wanmock.contracts.testing",
            "wanmock.contracts.tools",
            "httpx",
        },
    ),
}


def _part_of(name: str) -> str:
    """The part a dotted import belongs to: the longest ALLOWED key that prefixes it, else its top name."""
    best = ""
    for part in ALLOWED:
        if (name == part or name.startswith(part + ".")) and len(part) > len(best):
            best = part
    return best or name.split(".")[0]


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return found


def _modules(part: str) -> list[Path]:
    directory = ROOT / ALLOWED[part][0]
    nested = {ROOT / d for p, (d, _) in ALLOWED.items() if p.startswith(part + ".")}
    return [p for p in directory.rglob("*.py") if not any(n in p.parents for n in nested)]


@pytest.mark.parametrize("part", sorted(ALLOWED))
def test_each_part_imports_only_what_it_is_allowed(part: str) -> None:
    allowed = ALLOWED[part][1] | {part} | STDLIB
    violations = {}
    for path in _modules(part):
        bad = sorted(name for name in _imports(path) if _part_of(name) not in allowed)
        if bad:
            violations[str(path.relative_to(ROOT))] = bad
    assert violations == {}


def test_nothing_imports_a_generic_top_level_name() -> None:
    generic = {"schemas", "mockserver", "contracts"}
    offenders = {
        str(path.relative_to(ROOT)): sorted(n for n in _imports(path) if n.split(".")[0] in generic)
        for base in ("schemas", "mockserver", "contracts", "tests", "benchmarks")
        for path in (ROOT / base).rglob("*.py")
    }
    assert {k: v for k, v in offenders.items() if v} == {}


def test_the_allow_list_catches_a_violation(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("import httpx\nfrom wanmock.contracts.client import WanClient\n", encoding="utf-8")
    names = _imports(bad)
    allowed = ALLOWED["wanmock.mockserver"][1] | {"wanmock.mockserver"} | STDLIB
    assert sorted(n for n in names if _part_of(n) not in allowed) == ["httpx", "wanmock.contracts.client"]


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return "wanmock." + ".".join(parts)


def _runtime_imports(path: Path) -> set[str]:
    """Every module ``path`` imports at run time, at its top or inside a function (deferred
    imports count: they are a dependency all the same), but not under ``if TYPE_CHECKING``."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    typing_only = {
        id(inner)
        for node in ast.walk(tree)
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
        for stmt in node.body
        for inner in ast.walk(stmt)
    }
    found: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in typing_only:
            continue
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


# Deferred imports that close a cycle, each a known debt: the store factory (store.open_store)
# picks a backend module that imports store.py back for the protocol.
KNOWN_CYCLE_EDGES = {
    ("wanmock.mockserver.store", "wanmock.mockserver.sqlite_store"),
    ("wanmock.mockserver.store", "wanmock.mockserver.redis_store"),
}


def test_no_import_cycle() -> None:
    """No wanmock module imports itself back through others (app <-> admin was one)."""
    modules = {
        _module_name(path): path
        for base in ("schemas", "mockserver", "contracts")
        for path in (ROOT / base).rglob("*.py")
    }
    graph = {
        name: {
            i
            for i in _runtime_imports(path)
            if i in modules and i != name and not name.startswith(i + ".") and (name, i) not in KNOWN_CYCLE_EDGES
        }
        for name, path in modules.items()
    }
    cycles = []
    for start in sorted(graph):
        stack, seen = [(start, [start])], set()
        while stack:
            node, trail = stack.pop()
            for nxt in sorted(graph[node]):
                if nxt == start:
                    cycles.append(" -> ".join([*trail, start]))
                elif nxt not in seen:
                    seen.add(nxt)
                    stack.append((nxt, [*trail, nxt]))
    assert cycles == []


def _code_strings(path: Path) -> list[tuple[int, str]]:
    """(line, text) of every string in ``path``'s code: literals and f-string parts, docstrings aside."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    docstrings = {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
        and node.body
        and isinstance(node.body[0], ast.Expr)
        and isinstance(node.body[0].value, ast.Constant)
    }
    return [
        (node.lineno, node.value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings
    ]


def test_only_the_control_plane_client_spells_admin_paths() -> None:
    """contracts/ calls a wanmock's /__admin/ only through tools/control.py (``Control``)."""
    spelt = [
        f"{path.relative_to(ROOT)}:{line}"
        for path in sorted((ROOT / "contracts").rglob("*.py"))
        if path != ROOT / "contracts" / "tools" / "control.py"
        for line, text in _code_strings(path)
        if "/__admin" in text
    ]
    assert spelt == []
