"""The layers import downwards only (ARCHITECTURE-REVIEW P4).

- core/ is the sans-IO bottom: it imports nothing from the package above it,
  and no I/O, clock or greenlet module.
- codegen/ (the protoc plugin) needs no runtime: no gevent, and none of the
  modules that serve or make calls.

Read from the source with ast, so a violation names the file and line.
"""
from __future__ import annotations

import ast
import importlib.util
import subprocess
import sys
from pathlib import Path
from typing import Iterator, Tuple

import onedrive_rpc
from onedrive_rpc import errors
from onedrive_rpc.core import errors as core_errors

PACKAGE = Path(onedrive_rpc.__file__).resolve().parent

# What the sans-IO core promises not to touch (core/__init__.py).
CORE_FORBIDDEN = ("gevent", "socket", "select", "selectors", "time", "threading", "asyncio")
CODEGEN_FORBIDDEN = ("gevent", "onedrive_rpc.calls", "onedrive_rpc.service", "onedrive_rpc.driver",
                     "onedrive_rpc.peer", "onedrive_rpc.server")


def _imports(path: Path) -> Iterator[Tuple[int, int, str]]:
    """(line, level, absolute module) of every import in `path`; level is
    the number of leading dots a relative import had."""
    package = ".".join(("onedrive_rpc", *path.relative_to(PACKAGE).parent.parts))
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, 0, alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[:len(package.split(".")) - node.level + 1]
                stem = ".".join(base + ([node.module] if node.module else []))
                # `from . import x`: x may be a module.
                names = [f"{stem}.{a.name}" for a in node.names] if not node.module else [stem]
            else:
                names = [node.module or ""]
            for name in names:
                yield node.lineno, node.level, name


def _within(name: str, prefixes: Tuple[str, ...]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def test_core_imports_nothing_from_the_package_above_it():
    wrong = []
    for path in sorted((PACKAGE / "core").glob("*.py")):
        for line, level, name in _imports(path):
            if level > 1 or (_within(name, ("onedrive_rpc",)) and not _within(name, ("onedrive_rpc.core",))):
                wrong.append(f"core/{path.name}:{line}: {name}")
            if _within(name, CORE_FORBIDDEN):
                wrong.append(f"core/{path.name}:{line}: {name} (I/O, clock or greenlets)")
    assert not wrong, "core/ imports from above it:\n" + "\n".join(wrong)


def test_codegen_imports_no_runtime():
    wrong = [f"codegen/{path.name}:{line}: {name}"
             for path in sorted((PACKAGE / "codegen").glob("*.py"))
             for line, _, name in _imports(path) if _within(name, CODEGEN_FORBIDDEN)]
    assert not wrong, "codegen/ imports the runtime:\n" + "\n".join(wrong)


def test_codegen_loads_no_gevent_apart_from_the_package_init():
    # The package's __init__ imports the whole runtime; with it replaced by
    # an empty package of the same path, what codegen itself pulls in shows.
    search = list(importlib.util.find_spec("onedrive_rpc").submodule_search_locations)
    script = (
        "import sys, types\n"
        "package = types.ModuleType('onedrive_rpc')\n"
        f"package.__path__ = {search!r}\n"
        "sys.modules['onedrive_rpc'] = package\n"
        "import onedrive_rpc.codegen.model, onedrive_rpc.codegen.plugin, onedrive_rpc.codegen.render\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'gevent'))\n")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_protocol_errors_are_the_same_objects_everywhere():
    for name in core_errors.__all__:
        assert getattr(errors, name) is getattr(core_errors, name)
        assert getattr(onedrive_rpc, name, None) in (None, getattr(core_errors, name))
    assert onedrive_rpc.RemoteProtocolError is core_errors.RemoteProtocolError
