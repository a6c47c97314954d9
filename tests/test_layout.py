"""The package's shape holds: no import circle, each layer imports only the layers below it, only
edgees/engine imports llama_cpp, modules stay readable in size, and every package says its job."""

from __future__ import annotations

import ast
from pathlib import Path

PKG = Path(__file__).resolve().parent.parent / "edgees"
MAX_LINES = 420  # "around 400 lines or less" (STYLE.md rule 8)

# layer -> the edgees layers it may import (besides itself and the always-allowed ones)
ALLOWED = {
    "gguf": set(),
    "qes": {"gguf"},
    "engine": {"gguf"},
    "tasks": set(),
    "run": {"gguf", "qes", "engine", "tasks"},
    "bench": {"gguf", "qes", "engine", "tasks", "run"},
    "stores": set(),
    "models": {"stores"},
    "daemon": {"gguf", "qes", "engine", "tasks", "run", "stores", "models"},
    "scale": {"gguf", "qes", "engine", "tasks", "run"},
}
BASE = {"errors", "fileio", "_native", "__init__"}  # importable by every layer


def _modules() -> dict[str, Path]:
    out = {}
    for p in PKG.rglob("*.py"):
        rel = p.relative_to(PKG.parent).with_suffix("")
        name = ".".join(rel.parts)
        out[name.removesuffix(".__init__")] = p
    return out


def _edgees_imports(nodes) -> set[str]:
    found = set()
    for node in nodes:
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("edgees"):
            found.add(node.module)
            found.update(f"{node.module}.{a.name}" for a in node.names)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("edgees"))
    return found


def _imports(path: Path, name: str) -> set[str]:
    """edgees modules a file imports anywhere (lazy imports inside functions make no circle at
    import time, but they still count for the layer rules)."""
    return _edgees_imports(ast.walk(ast.parse(path.read_text())))


def _top_level_imports(path: Path) -> set[str]:
    return _edgees_imports(ast.parse(path.read_text()).body)


def _layer(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def test_no_import_circle():
    mods = _modules()
    graph = {m: {i for i in _top_level_imports(p) if i in mods and i != m} for m, p in mods.items()}
    state: dict[str, int] = {}  # 1 on the stack, 2 done

    def visit(m, stack):
        state[m] = 1
        for n in sorted(graph[m]):
            if state.get(n) == 1:
                raise AssertionError("import circle: " + " -> ".join(stack[stack.index(n):] + [n]))
            if n not in state:
                visit(n, stack + [n])
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m, [m])


def test_layers_import_only_downwards():
    bad = []
    for m, p in _modules().items():
        layer = _layer(m)
        if layer not in ALLOWED:
            continue  # commands, cli, __main__: may import everything
        for imp in _imports(p, m):
            other = _layer(imp)
            if imp == "edgees" or other in BASE or other == layer or other in ALLOWED[layer]:
                continue
            if imp.startswith("edgees.") and other not in ALLOWED and other not in ("commands", "cli"):
                continue  # a name imported from a base module, e.g. edgees.__version__
            bad.append(f"{m} imports {imp}")
    assert not bad, bad


def test_only_the_engine_imports_llama_cpp():
    users = []
    for m, p in _modules().items():
        tree = ast.parse(p.read_text())
        for node in ast.walk(tree):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            if any(n.split(".")[0] == "llama_cpp" for n in names):
                users.append(m)
    assert users and all(u.startswith("edgees.engine.") for u in users), users


def test_modules_are_readable_in_size():
    long = {str(p.relative_to(PKG)): n for p in PKG.rglob("*.py") if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert not long, long


def test_every_module_says_its_job():
    missing = [str(p.relative_to(PKG)) for p in PKG.rglob("*.py") if ast.get_docstring(ast.parse(p.read_text())) is None]
    assert not missing, missing


def test_library_code_never_prints():
    printers = []
    for m, p in _modules().items():
        if _layer(m) in ("commands", "cli", "__main__", "bench"):
            continue
        for node in ast.walk(ast.parse(p.read_text())):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in ("print", "exit"):
                printers.append(f"{m}:{node.lineno}")
    assert not printers, printers
