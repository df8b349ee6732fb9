"""The shape of the code base, checked: task kinds are named only by the family modules and
the registry, no import cycles (function-level imports included), layers point one way,
and modules stay small."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("interp", "circuits", "probes", "experiments")
KINDS = {"modular", "two_hop", "comparison", "graph_walk"}
#: The only modules that may name a task kind.
FAMILY_MODULES = {
    "interp/registry.py",
    *(p.relative_to(ROOT).as_posix() for p in (ROOT / "circuits/families").rglob("*.py")),
}
MAX_LINES = 400
#: Modules that tie the layers together and may import the layers above `interp`: the CLI
#: and its sweep commands.
COMPOSITION_ROOTS = {"interp.cli", "interp.cli_sweep"}


def _modules() -> dict[str, Path]:
    out = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            parts = path.relative_to(ROOT).with_suffix("").parts
            out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


def _imports(path: Path, modules: dict[str, Path]) -> set[str]:
    """Project modules imported anywhere in the file (top level or inside functions), except
    under `if TYPE_CHECKING:` (annotations only, never executed)."""
    found = set()
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and getattr(node.test, "id", None) == "TYPE_CHECKING":
            node.body = []
    for node in ast.walk(tree):
        names = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            # `from pkg import submodule` depends on the submodule; on the package only for
            # names defined in it (its lazy facade's function-level imports do not run).
            subs = [f"{node.module}.{a.name}" for a in node.names]
            names = [n for n in subs if n in modules]
            if len(names) < len(subs):
                names.append(node.module)
        for name in names:
            while name and name not in modules:
                name = name.rpartition(".")[0]
            if name:
                found.add(name)
    return found


def test_no_module_outside_the_families_and_the_registry_names_a_task_kind():
    hits = []
    for name, path in _modules().items():
        rel = path.relative_to(ROOT).as_posix()
        if rel in FAMILY_MODULES:
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Constant) and node.value in KINDS:
                hits.append(f"{rel}:{node.lineno} {node.value!r}")
    assert not hits, "task kinds named outside the family modules:\n" + "\n".join(hits)


def test_no_import_cycles():
    modules = _modules()
    graph = {name: _imports(path, modules) - {name} for name, path in modules.items()}
    # A package's __init__ importing its own submodules is not a cycle of layers.
    graph = {m: {d for d in deps if not d.startswith(m + ".")} for m, deps in graph.items()}
    cycles, state = [], {}

    def visit(node, stack):
        state[node] = "open"
        for dep in sorted(graph.get(node, ())):
            if state.get(dep) == "open":
                cycles.append(" -> ".join(stack[stack.index(dep) :] + [dep]))
            elif dep not in state:
                visit(dep, stack + [dep])
        state[node] = "done"

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    assert not cycles, "import cycles:\n" + "\n".join(cycles)


def test_layers_point_one_way():
    """experiments -> circuits, probes -> interp: the foundation never imports the layers above
    (the CLI, the composition root, is the exception)."""
    modules = _modules()
    wrong = []
    for name, path in modules.items():
        for dep in _imports(path, modules):
            layer, dep_layer = name.split(".")[0], dep.split(".")[0]
            if layer == "interp" and dep_layer != "interp" and name not in COMPOSITION_ROOTS:
                wrong.append(f"{name} imports {dep}")
            if layer in ("circuits", "probes") and dep_layer == "experiments":
                wrong.append(f"{name} imports {dep}")
    assert not wrong, "\n".join(wrong)


def test_modules_stay_small():
    long = {
        p.relative_to(ROOT).as_posix(): n
        for p in _modules().values()
        if (n := len(p.read_text(encoding="utf-8").splitlines())) > MAX_LINES
    }
    assert not long, f"modules over {MAX_LINES} lines: {long}"


def test_no_module_imports_another_modules_private_names():
    """Underscore names stay inside their module: what another module needs is public (named and
    documented where it is defined), so a split of a long module does not leak internals."""
    modules = _modules()
    hits = []
    for name, path in modules.items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        aliases = {}  # local name -> project module it is bound to
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                for alias in node.names:
                    full = f"{node.module}.{alias.name}"
                    if full in modules:
                        aliases[alias.asname or alias.name] = full
                    elif node.module in modules and _private(alias.name):
                        hits.append(f"{name}: from {node.module} import {alias.name}")
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name in modules and alias.asname:
                        aliases[alias.asname] = alias.name
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Attribute)
                and _private(node.attr)
                and isinstance(node.value, ast.Name)
                and node.value.id in aliases
            ):
                hits.append(f"{name}:{node.lineno} {node.value.id}.{node.attr}")
    assert not hits, "private names used outside their module:\n" + "\n".join(hits)


def _private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")
