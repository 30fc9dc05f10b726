"""Layering of the package, checked on its source (``ast``) and on a real ``import sc_print``.

- ``sp.tl``, ``sp.pl``, ``sp.get`` and ``sp.pp`` never import a private name (a module or a name with a
  leading underscore) of one another: what they share lives in neutral internal modules (``sc_print._keys``,
  ``sc_print._networks``, ...), as squidpy's ``gr`` and ``pl`` meet only in ``_constants``.
- No import cycle among sc_print modules, neither among the imports run by ``import sc_print`` (eager) nor
  once the imports inside functions are counted (lazy).
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"
ROOT = "sc_print"
#: public subpackages that must not import each other's private names
LAYERS = ("tl", "pl", "get", "pp")


# --------------------------------------------------------------------------------------------------- parsing
@dataclass(frozen=True)
class Import:
    importer: str  #: dotted name of the importing module
    module: str  #: dotted name of the imported module (absolute)
    names: tuple[str, ...]  #: names taken from it (``from m import a, b``); empty for ``import m``
    lazy: bool  #: inside a function (runs only when it is called)
    type_checking: bool  #: under ``if TYPE_CHECKING:`` (never runs)
    line: int


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted((SRC / ROOT).rglob("*.py"))}


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(name: str, path: Path) -> list[Import]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: list[Import] = []

    def visit(node: ast.AST, *, lazy: bool, type_checking: bool) -> None:
        for child in ast.iter_child_nodes(node):
            child_lazy = lazy or isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda)
            if isinstance(child, ast.If) and _is_type_checking(child.test):
                for stmt in child.body:
                    visit(ast.Module(body=[stmt], type_ignores=[]), lazy=lazy, type_checking=True)
                for stmt in child.orelse:
                    visit(ast.Module(body=[stmt], type_ignores=[]), lazy=lazy, type_checking=type_checking)
                continue
            if isinstance(child, ast.Import):
                for alias in child.names:
                    found.append(Import(name, alias.name, (), lazy, type_checking, child.lineno))
            elif isinstance(child, ast.ImportFrom):
                if child.level:
                    base = package.split(".")
                    base = base[: len(base) - (child.level - 1)]
                    module = ".".join(base + ([child.module] if child.module else []))
                else:
                    module = child.module or ""
                names = tuple(a.name for a in child.names)
                found.append(Import(name, module, names, lazy, type_checking, child.lineno))
            visit(child, lazy=child_lazy, type_checking=type_checking)

    visit(tree, lazy=False, type_checking=False)
    return found


MODULES = _modules()
IMPORTS = [imp for name, path in MODULES.items() for imp in _imports(name, path)]


# --------------------------------------------------------------------------------------------------- layering
def _layer(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[0] == ROOT and parts[1] in LAYERS else None


def private_imports_across_layers(imports: list[Import]) -> list[str]:
    """``importer:line -> target`` for each private name a layer takes from another layer."""
    bad = []
    for imp in imports:
        source, target = _layer(imp.importer), _layer(imp.module)
        if source is None or target is None or source == target:
            continue
        private_module = any(part.startswith("_") for part in imp.module.split(".")[2:])
        private_names = [n for n in imp.names if n.startswith("_")]
        if private_module or private_names:
            what = imp.module + (f" ({', '.join(imp.names)})" if imp.names else "")
            bad.append(f"{imp.importer}:{imp.line} imports {what}")
    return bad


def test_layers_import_no_private_name_of_one_another():
    bad = private_imports_across_layers(IMPORTS)
    assert not bad, "private imports across sp.tl/pl/get/pp (move the shared code to a neutral module):\n" + "\n".join(
        bad
    )


def test_layering_check_catches_a_private_import(tmp_path):
    """The check fails on the kind of import it forbids (relative, absolute, lazy and type-only)."""
    fake = [
        Import("sc_print.pl._hubs", "sc_print.tl._hubs", ("diff_hubs_key",), False, False, 1),
        Import("sc_print.tl._hubs", "sc_print.get", ("_select_one",), True, False, 2),
        Import("sc_print.get._network", "sc_print.pp._prepare", (), False, True, 3),
        Import("sc_print.tl._hubs", "sc_print.tl._common", ("_x",), False, False, 4),  # same layer: allowed
        Import("sc_print.tl._hubs", "sc_print._networks", ("_x",), False, False, 5),  # neutral module: allowed
        Import("sc_print.tl._hubs", "sc_print.get", ("network",), False, False, 6),  # public name: allowed
    ]
    assert [b.split(":")[1].split()[0] for b in private_imports_across_layers(fake)] == ["1", "2", "3"]
    relative = _imports("sc_print.pl._hubs", _write(tmp_path, "from ..tl._hubs import hubs\n"))
    assert relative[0].module == "sc_print.tl._hubs"
    assert private_imports_across_layers(relative)


def _write(tmp_path: Path, text: str) -> Path:
    """A module file ``<tmp>/src/sc_print/pl/_probe.py`` (parsed by :func:`_imports`, never imported)."""
    path = tmp_path / "src" / ROOT / "pl" / "_probe.py"
    path.parent.mkdir(parents=True)
    path.write_text(text)
    return path


# --------------------------------------------------------------------------------------------------- cycles
def _resolve(imp: Import) -> set[str]:
    """sc_print modules whose code an import needs: the module, its parent packages and imported submodules.

    A package that contains the importer is already running: it counts only when a name defined in it (not
    a submodule) is taken from it, e.g. ``from sc_print.data import f`` inside ``sc_print.data._x``.
    """
    if imp.module != ROOT and not imp.module.startswith(ROOT + "."):
        return set()

    def running(package: str) -> bool:
        return imp.importer == package or imp.importer.startswith(package + ".")

    submodules = {f"{imp.module}.{n}" for n in imp.names if f"{imp.module}.{n}" in MODULES}
    targets = set(submodules)
    if imp.module in MODULES and (not running(imp.module) or len(submodules) < len(imp.names)):
        targets.add(imp.module)
    parts = imp.module.split(".")
    for i in range(1, len(parts)):  # parent packages run first, unless they are already running
        parent = ".".join(parts[:i])
        if parent in MODULES and not running(parent):
            targets.add(parent)
    targets.discard(imp.importer)
    return targets


def import_graph(imports: list[Import], *, lazy: bool) -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {m: set() for m in MODULES}
    for imp in imports:
        if imp.type_checking or (imp.lazy and not lazy):
            continue
        graph.setdefault(imp.importer, set()).update(_resolve(imp))
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []
    counter = [0]

    def strongconnect(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                strongconnect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10_000))
    for v in sorted(graph):
        if v not in index:
            strongconnect(v)
    return out


def test_cycle_check_catches_a_cycle():
    fake = [
        Import("sc_print.tl._a", "sc_print.tl._b", ("x",), False, False, 1),
        Import("sc_print.tl._b", "sc_print.tl", ("_a",), True, False, 2),  # lazy, through ``from pkg import mod``
    ]
    saved = dict(MODULES)
    MODULES.update({"sc_print.tl._a": Path("a"), "sc_print.tl._b": Path("b")})
    try:
        assert cycles(import_graph(fake, lazy=False)) == []
        assert cycles(import_graph(fake, lazy=True)) == [["sc_print.tl._a", "sc_print.tl._b"]]
    finally:
        MODULES.clear()
        MODULES.update(saved)


def test_no_eager_import_cycle():
    found = cycles(import_graph(IMPORTS, lazy=False))
    assert not found, f"import cycles among the imports run by `import sc_print`: {found}"


def test_no_lazy_import_cycle():
    """Imports inside functions count too: a cycle held apart only by them is still a cycle (0.1.0 had
    ``_utils`` <-> ``model`` <-> ``hub``)."""
    found = cycles(import_graph(IMPORTS, lazy=True))
    assert not found, f"import cycles through imports inside functions: {found}"


# --------------------------------------------------------------------------------------------------- runtime
def test_import_sc_print_imports_what_the_source_says():
    """``python -X importtime -c "import sc_print"`` runs exactly the eager imports seen above (so the cycle
    check covers what really runs), in a fresh interpreter."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")])}
    run = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", "import sc_print"],
        capture_output=True,
        text=True,
        env=env,
        check=False,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    imported = set()
    for line in run.stderr.splitlines():
        if line.startswith("import time:") and "|" in line:
            name = line.rsplit("|", 1)[1].strip()
            if name == ROOT or name.startswith(ROOT + "."):
                imported.add(name)
    graph = import_graph(IMPORTS, lazy=False)
    reached, todo = set(), [ROOT]
    while todo:
        m = todo.pop()
        if m not in reached:
            reached.add(m)
            todo.extend(graph.get(m, ()))
            todo.extend(p for p in (m.rpartition(".")[0],) if p in MODULES)
    assert imported == reached, {"imported, not seen": imported - reached, "seen, not imported": reached - imported}
