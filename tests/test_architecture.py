"""The package's shape, checked from its source: no import cycles, tools apart from the core.

Imports are read with ``ast`` (module level and inside functions alike: a
function-level import is still a dependency, only a later one), leaving out
``if TYPE_CHECKING:`` blocks, which never run. A package's ``__init__`` that
Python runs on the way to a submodule is not counted as an edge: only what a
module names.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import seedance_otel

PACKAGE_DIR = Path(seedance_otel.__file__).parent
ROOT = "seedance_otel"

TOOLS = (
    "seedance_otel.__main__",
    "seedance_otel.cli",
    "seedance_otel.dashboards.cli",
    "seedance_otel.demo",
    "seedance_otel.diagnosis.cli",
    "seedance_otel.receiver",
)
"""The command-line tools (CLI, ``receive``, dashboards installer, demo): they
use the library; the library never uses them."""


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE_DIR.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    return {_module_name(path): path for path in sorted(PACKAGE_DIR.rglob("*.py"))}


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(name: str, path: Path, known: dict[str, Path]) -> set[str]:
    """The package's modules that ``name`` imports."""
    is_package = path.name == "__init__.py"
    package = name if is_package else name.rpartition(".")[0]
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node):
            for statement in node.orelse:
                visit(statement)
            return
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name == ROOT or alias.name.startswith(ROOT + "."):
                    found.add(alias.name)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target == ROOT or target.startswith(ROOT + "."):
                for alias in node.names:
                    sub = f"{target}.{alias.name}"
                    found.add(sub if sub in known else target)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(ast.parse(path.read_text(), str(path)))
    found.discard(name)
    return {module for module in found if module in known}


def _graph() -> dict[str, set[str]]:
    known = _modules()
    return {name: _imports(name, path, known) for name, path in known.items()}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def connect(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph[node]):
            if target not in index:
                connect(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            connect(node)
    return found


def _is_tool(module: str) -> bool:
    return any(module == tool or module.startswith(tool + ".") for tool in TOOLS)


def test_the_graph_is_read():
    # The check below means nothing if the reader finds no edges.
    graph = _graph()
    assert "seedance_otel._capture" in graph["seedance_otel.instrumentation.aiohttp_client"]
    assert "seedance_otel.instrumentation.registry" in graph["seedance_otel.instrumentor"]
    assert _cycles({"a": {"b"}, "b": {"a"}, "c": {"a"}}) == [["a", "b"]]


def test_no_import_cycles():
    assert _cycles(_graph()) == []


def test_the_core_never_imports_the_tools():
    offenders = {
        f"{module} -> {target}"
        for module, targets in _graph().items()
        if not _is_tool(module)
        for target in targets
        if _is_tool(target)
    }
    assert offenders == set()


def _describing_module(library: object) -> str:
    """The module whose ``LIBRARY`` is ``library`` (its own module)."""
    import importlib

    for name in _modules():
        if name.startswith("seedance_otel.instrumentation."):
            if getattr(importlib.import_module(name), "LIBRARY", None) is library:
                return name
    raise AssertionError(f"no module describes {library}")


def test_no_library_is_named_outside_its_own_module():
    # The registry is the one place that lists them; every other module
    # reads library facts from the descriptions.
    from seedance_otel.instrumentation.registry import LIBRARIES

    own = {lib.name: _describing_module(lib) for lib in LIBRARIES}
    allowed = {"seedance_otel.instrumentation.registry", *own.values()}
    offenders = []
    for module, path in _modules().items():
        if module in allowed or _is_tool(module):
            continue
        tree = ast.parse(path.read_text(), str(path))
        # Docstrings (of modules, classes, functions and attributes) may name
        # libraries in prose; code may not.
        docstrings = {
            id(node.value)
            for node in ast.walk(tree)
            if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant)
        }
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Constant)
                and isinstance(node.value, str)
                and id(node) not in docstrings
            ):
                words = set(re.findall(r"[A-Za-z_][A-Za-z0-9_]*", node.value))
                for name in own:
                    # "asyncio" is also the standard library every module may name.
                    if name != "asyncio" and name in words:
                        offenders.append(f"{module}:{node.lineno}: {node.value!r}")
    assert offenders == []
