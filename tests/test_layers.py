"""The package layout keeps its promise: imports go one way, with no cycle and no import hidden in a
function to dodge one (docs/architecture.md, "Layers").

Layers, top to bottom; a module may import its own layer and the ones below, never one above:

- public API: ``mpirt/*.py`` (api, remote functions, actors, runtime context, options) and ``mpirt.util``;
- ``mpirt.launch``: starting and stopping the ranks (discovery, mpirun start, spawn start, the serve loop);
- the runtime: ``mpirt.core`` (roles and mechanisms), ``mpirt.store``, ``mpirt.scheduler``;
- leaves of the public API, importable from anywhere: ``mpirt.exceptions``, ``mpirt.slurm`` (what mpirt
  reads from a Slurm allocation: the launcher's worker count, Tune's defaults, the user's ``job()``).

Entry points (``ENTRY_POINTS``: the main of a spawned rank or of a task slot) sit above them all.

``mpirt.libs`` (Tune, RL) sits on top of the public API and is checked for cycles among its module-level
imports only (it imports its optional extras inside functions).
"""
import ast
import pathlib

PACKAGE = pathlib.Path(__file__).resolve().parent.parent / "mpirt"
LEAVES = {"mpirt.exceptions", "mpirt.slurm"}
# The programs a process runs as its main: above everything, they wire the layers together. A task slot
# (slot_process) rebinds the public API so that every call the task makes is forwarded to its rank.
ENTRY_POINTS = {"mpirt.launch._spawned", "mpirt.core.slot_process"}


def _modules():
    modules = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        modules[name] = path
    return modules


MODULES = _modules()


def _imports(name, path):
    """(imported mpirt module, at module level?) for each import in ``name``'s source. Importing a
    submodule imports its packages too, so those count as imported."""
    tree = ast.parse(path.read_text())
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    top_level = {id(node) for node in ast.walk(tree) if _at_module_level(tree, node)}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[:len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            targets = [f"{target}.{alias.name}" if f"{target}.{alias.name}" in MODULES else target
                       for alias in node.names]
        elif isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        else:
            continue
        for target in targets:
            while target and target not in MODULES:
                target = target.rpartition(".")[0]
            parts = target.split(".")
            for depth in range(2, len(parts) + 1):      # its packages below mpirt, then itself
                module = ".".join(parts[:depth])
                if module in MODULES and module != name and not name.startswith(module + "."):
                    found.append((module, id(node) in top_level))
    return found


def _at_module_level(tree, node):
    """Module body, or inside a module-level ``try``/``if`` (optional imports)."""
    for statement in tree.body:
        if statement is node:
            return True
        if isinstance(statement, (ast.Try, ast.If)) and any(child is node for child in ast.walk(statement)):
            return True
    return False


GRAPH = {name: _imports(name, path) for name, path in MODULES.items()}


def _layer(name):
    if name in ENTRY_POINTS:
        return 5
    if name in LEAVES:
        return 0
    if name.startswith(("mpirt.core", "mpirt.store", "mpirt.scheduler")):
        return 1
    if name.startswith("mpirt.launch"):
        return 2
    if name.startswith("mpirt.libs"):
        return 4
    return 3       # mpirt itself, its public modules, mpirt.util


def test_runtime_packages_exist():
    for package in ("mpirt.core", "mpirt.launch", "mpirt.store", "mpirt.scheduler", "mpirt.libs"):
        assert package in MODULES, package
    flat = sorted(name for name in MODULES if name.count(".") == 1 and _layer(name) == 3)
    assert len(flat) <= 12, f"public modules at mpirt/: keep the runtime out of them: {flat}"


def test_imports_go_down_the_layers():
    upward = [f"{name} imports {target}" for name, edges in GRAPH.items() for target, _ in edges
              if _layer(target) > _layer(name) and not name == "mpirt"]
    assert not upward, "\n".join(upward)


def test_no_import_inside_a_function_outside_libs():
    hidden = [f"{name} imports {target} inside a function" for name, edges in GRAPH.items()
              if not name.startswith("mpirt.libs") for target, top in edges if not top]
    assert not hidden, "\n".join(hidden)


def _cycles(names, top_level_only=False):
    graph = {name: {target for target, top in GRAPH[name] if target in names and (top or not top_level_only)}
             for name in names}
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(node):
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in graph[node]:
            if target not in index:
                visit(target)
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

    for node in graph:
        if node not in index:
            visit(node)
    return found


def test_no_import_cycles():
    names = {name for name in MODULES if name != "mpirt" and not name.startswith("mpirt.libs")}
    assert _cycles(names) == []


def test_no_import_cycles_in_libs_at_module_level():
    """Tune imports the RL library (an optional extra: torch, gymnasium) only when a name it does
    not know is looked up, which is where the libraries' imports inside functions are allowed."""
    names = {name for name in MODULES if name.startswith("mpirt.libs")}
    assert _cycles(names, top_level_only=True) == []


def test_the_checker_sees_a_cycle():
    """The cycle finder is real: two modules importing each other make one."""
    GRAPH["mpirt.fake_a"] = [("mpirt.fake_b", True)]
    GRAPH["mpirt.fake_b"] = [("mpirt.fake_a", False)]
    try:
        assert _cycles({"mpirt.fake_a", "mpirt.fake_b"}) == [["mpirt.fake_a", "mpirt.fake_b"]]
    finally:
        del GRAPH["mpirt.fake_a"], GRAPH["mpirt.fake_b"]



def test_ray_library_names_import_under_mpirt():
    """``import mpirt.tune`` and its submodules give the very modules of ``mpirt.libs`` (no second copy)."""
    import subprocess
    import sys
    code = ("import sys, mpirt.tune, mpirt.train, mpirt.rllib\n"
            "from mpirt.tune.search import ConcurrencyLimiter\n"
            "import mpirt.libs.tune.search as real\n"
            "assert mpirt.tune is mpirt.libs.tune and mpirt.rllib is mpirt.libs.rl and mpirt.train is mpirt.libs.train\n"
            "assert ConcurrencyLimiter is real.ConcurrencyLimiter\n"
            "assert sys.modules['mpirt.tune.search'] is real\n"
            "try:\n    import mpirt.tune.no_such_module\nexcept ModuleNotFoundError as e:\n"
            "    assert 'mpirt.tune.no_such_module' in str(e)\nelse:\n    raise AssertionError('imported')\n")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
