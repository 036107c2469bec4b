"""Imports in ``src/celeriac`` flow one way: no cycle, nothing low imports anything high.

The layer order is written in docs/design/architecture.md ("Layers: who may import whom");
``LAYERS`` below is that table as data. The graph counts every ``import`` statement the
parser sees: at module level, inside functions and under ``if TYPE_CHECKING:``, with
relative imports resolved; importing ``a.b.c`` also runs the package ``a.b``, so that is an
edge too. A type-only import is still a dependency of the design, so it
obeys the same order. Modules named in strings (the URL-scheme tables of ``transports/``
and ``backends/``) are not edges; they point inside their own layer.

A function-level import is allowed where a lazy import saves start-up time or loads an
optional driver, and must say so with a ``# lazy: <reason>`` comment on its line or the
line above. ``ALLOWED_UPWARD`` lists the lazy imports that may point up a layer, each with
its reason; it is empty, and should stay so.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

SRC = Path(__file__).resolve().parents[2] / "src"
PACKAGE = "celeriac"

#: Bottom to top. A module belongs to the layer of the longest prefix that names it (a
#: prefix is a module or a package: ``celeriac.transports`` covers every module under it).
LAYERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    (
        "base",  # pure values, wire formats, settings; private helpers of every layer
        (
            "celeriac.protocol",
            "celeriac.routing",
            "celeriac.exceptions",
            "celeriac.states",
            "celeriac.signals",
            "celeriac.utils",
            "celeriac._version",
            "celeriac._time",
            "celeriac._imports",
            "celeriac._lamport",
            "celeriac._masking",
            "celeriac._pickling",
            "celeriac._proxy",
            "celeriac._sqlite",
            "celeriac._redis",
            "celeriac._amqp",
            "celeriac._options",
            "celeriac._forkguard",
            "celeriac._gevent_patch",
            "celeriac._prometheus",
            "celeriac.app.settings",
            "celeriac.app._setting_names",
            "celeriac.app._settings_support",
        ),
    ),
    ("stores", ("celeriac.transports", "celeriac.backends")),
    (
        "core",  # what an app is made of; typed against celeriac._app_protocol.AppLike
        (
            "celeriac._app_protocol",
            "celeriac._state",
            "celeriac.request",
            "celeriac.log",
            "celeriac.utils.log",
            "celeriac.result",
            "celeriac._result_set",
            "celeriac._pydantic",
            "celeriac.task",
            "celeriac.execution",
            "celeriac._eager",
            "celeriac._task_arguments",
            "celeriac.followups",
            "celeriac.canvas",
            "celeriac.events",
            "celeriac.aio",
            "celeriac.periodic",
            "celeriac.app",
        ),
    ),
    (
        "app",  # the Celery class, which assembles the core
        (
            "celeriac.app.base",
            "celeriac.app._tasks",
            "celeriac.app._task_class",
            "celeriac.app._cleanup",
            "celeriac.app._compat",
            "celeriac.app._fixups",
            "celeriac.app._discovery",
        ),
    ),
    (
        "services",
        (
            "celeriac.worker",
            "celeriac.beat",
        ),
    ),
    (
        "edge",
        (
            "celeriac",
            "celeriac.__main__",
            "celeriac.schedules",
            "celeriac.dashboard",
            "celeriac.cli",
            "celeriac.contrib",
        ),
    ),
)

#: (importing module, imported module) -> why a lazy import may point up a layer (the
#: packages Python runs first to import that module are allowed with it).
ALLOWED_UPWARD: dict[tuple[str, str], str] = {
    ("celeriac.beat.service", "celeriac.contrib.django.schedulers"): (
        "Django is optional: only a beat_scheduler naming Django's database scheduler loads it"
    ),
}


#: Cycles still to break, each the set of modules it may span. A cycle found must fit
#: inside one of them; one that is gone must leave the list (so it only shrinks).
KNOWN_CYCLES: tuple[frozenset[str], ...] = (
    # The core: AppLike names the parts' concrete types (ResultStore, Producer, the
    # registry, Control, Events, AsyncResult, Task) and they take an AppLike back, so
    # the types loop; narrow protocols per part (as backends/_sqlite_chord has) break
    # it. At run time the canvas flows one way (signature -> _tasklist -> chain/group/chord
    # -> compose): ``from_dict`` and ``a | b`` reach the higher classes through what they
    # register on ``Signature``, and stamping is handed ``maybe_signature``.
    frozenset(
        {
            "celeriac._app_protocol",
            "celeriac._pydantic",
            "celeriac._result_set",
            "celeriac._state",
            "celeriac.aio",
            "celeriac.aio.client",
            "celeriac.aio.mixins",
            "celeriac.app._pidbox",
            "celeriac.app._result_retry",
            "celeriac.app.control",
            "celeriac.app.producer",
            "celeriac.app.registry",
            "celeriac.app.results",
            "celeriac.canvas",
            "celeriac.canvas._lazy_header",
            "celeriac.canvas._partial",
            "celeriac.canvas._tasklist",
            "celeriac.canvas.chain",
            "celeriac.canvas.chord",
            "celeriac.canvas.compose",
            "celeriac.canvas.dispatch",
            "celeriac.canvas.group",
            "celeriac.canvas.join",
            "celeriac.canvas.maps",
            "celeriac.canvas.replace",
            "celeriac.canvas.signature",
            "celeriac.canvas.stamping",
            "celeriac.events",
            "celeriac.events.dispatcher",
            "celeriac.events.receiver",
            "celeriac.execution",
            "celeriac._eager",
            "celeriac.followups",
            "celeriac.request",
            "celeriac.result",
            "celeriac.task",
        }
    ),
)


#: The loops among ``KNOWN_CYCLES`` that run at import or call time (no ``TYPE_CHECKING``
#: edge in them), each exactly: a run-time loop may not grow while its type loop is broken.
KNOWN_RUNTIME_CYCLES: tuple[frozenset[str], ...] = ()

#: Packages whose function-level imports are left as they are, with why.
DEFERRED_ELSEWHERE: dict[str, str] = {}


def _allowed_upward(edge: Edge) -> bool:
    return edge.lazy and any(
        source == edge.source and (target == edge.target or target.startswith(edge.target + "."))
        for source, target in ALLOWED_UPWARD
    )


@dataclass(frozen=True)
class Edge:
    """One import statement of ``source`` naming ``target`` (both modules of the package)."""

    source: str
    target: str
    kind: str  # "module", "function" or "type_checking"
    line: int
    lazy: bool  # a "# lazy:" comment marks it


def module_names() -> dict[str, Path]:
    """Every module of the package, by dotted name."""
    names: dict[str, Path] = {}
    for path in sorted((SRC / PACKAGE).rglob("*.py")):
        parts = list(path.relative_to(SRC).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        names[".".join(parts)] = path
    return names


def _is_type_checking(test: ast.expr) -> bool:
    if isinstance(test, ast.Name):
        return test.id == "TYPE_CHECKING"
    return isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"


def _imports(tree: ast.Module) -> Iterator[tuple[ast.Import | ast.ImportFrom, str]]:
    """Each import statement with where it sits: module, function or type_checking."""

    def walk(node: ast.AST, kind: str) -> Iterator[tuple[ast.Import | ast.ImportFrom, str]]:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.Import | ast.ImportFrom):
                yield child, kind
            elif isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
                yield from walk(child, "function")
            elif isinstance(child, ast.If) and _is_type_checking(child.test):
                inner = "function" if kind == "function" else "type_checking"
                for statement in child.body:
                    yield from walk(ast.Module(body=[statement], type_ignores=[]), inner)
                for statement in child.orelse:
                    yield from walk(ast.Module(body=[statement], type_ignores=[]), kind)
            else:
                yield from walk(child, kind)

    return walk(tree, "module")


def _targets(
    node: ast.Import | ast.ImportFrom, source: str, is_package: bool, known: set[str]
) -> list[str]:
    if isinstance(node, ast.Import):
        found = []
        for alias in node.names:
            name = alias.name
            while name and name not in known:
                name = name.rpartition(".")[0]
            if name:
                found.append(name)
        return found
    if node.level:
        base_parts = source.split(".") if is_package else source.split(".")[:-1]
        base_parts = base_parts[: len(base_parts) - (node.level - 1)]
        base = ".".join(base_parts + ([node.module] if node.module else []))
    else:
        base = node.module or ""
    if base.split(".")[0] != PACKAGE:
        return []
    found = []
    for alias in node.names:
        submodule = f"{base}.{alias.name}"
        found.append(submodule if submodule in known else base)
    return [name for name in found if name in known]


def _is_lazy(lines: list[str], line: int) -> bool:
    here = lines[line - 1]
    above = lines[line - 2].strip() if line >= 2 else ""
    return "# lazy:" in here or above.startswith("# lazy:")


def _with_packages(target: str, source: str, known: set[str]) -> list[str]:
    """``target`` and the packages Python runs first to import it (``a.b`` for ``a.b.c``),
    less those ``source`` sits in: they are running already when ``source`` runs."""
    parts = target.split(".")
    names = [".".join(parts[:end]) for end in range(1, len(parts) + 1)]
    inside = {".".join(source.split(".")[:end]) for end in range(1, source.count(".") + 2)}
    return [name for name in names if name in known and name not in inside]


def import_edges() -> list[Edge]:
    """Every import between two modules of the package (with the packages it runs first),
    self-imports left out."""
    modules = module_names()
    known = set(modules)
    edges: list[Edge] = []
    for source, path in modules.items():
        text = path.read_text(encoding="utf-8")
        lines = text.splitlines()
        is_package = path.name == "__init__.py"
        for node, kind in _imports(ast.parse(text, filename=str(path))):
            lazy = _is_lazy(lines, node.lineno)
            for target in _targets(node, source, is_package, known):
                for name in _with_packages(target, source, known):
                    edges.append(Edge(source, name, kind, node.lineno, lazy))
    return list(dict.fromkeys(edges))


def layer_of(module: str) -> int:
    """Index in ``LAYERS`` of the longest prefix naming ``module``."""
    best, best_length = -1, -1
    for index, (_, prefixes) in enumerate(LAYERS):
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and len(prefix) > best_length:
                best, best_length = index, len(prefix)
    return best


def cycles(edges: list[Edge]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan, iterative)."""
    graph: dict[str, set[str]] = {}
    for edge in edges:
        graph.setdefault(edge.source, set()).add(edge.target)
        graph.setdefault(edge.target, set())
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    components: list[list[str]] = []
    counter = 0
    for root in sorted(graph):
        if root in index:
            continue
        work: list[tuple[str, Iterator[str]]] = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is None:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    component = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == node:
                            break
                    if len(component) > 1:
                        components.append(sorted(component))
            elif child not in index:
                index[child] = low[child] = counter
                counter += 1
                stack.append(child)
                on_stack.add(child)
                work.append((child, iter(sorted(graph[child]))))
            elif child in on_stack:
                low[node] = min(low[node], index[child])
    return components


def _describe(edge: Edge) -> str:
    source_layer = LAYERS[layer_of(edge.source)][0]
    target_layer = LAYERS[layer_of(edge.target)][0]
    return (
        f"{edge.source} ({source_layer}) imports {edge.target} ({target_layer}) "
        f"at line {edge.line} [{edge.kind}]"
    )


def test_every_module_has_a_layer() -> None:
    unplaced = [name for name in module_names() if layer_of(name) < 0]
    assert unplaced == [], (
        f"modules in no layer of LAYERS (docs/design/architecture.md): {unplaced}"
    )


def test_no_import_points_up_a_layer() -> None:
    upward = [
        _describe(edge)
        for edge in import_edges()
        if layer_of(edge.target) > layer_of(edge.source) and not _allowed_upward(edge)
    ]
    assert upward == [], "imports pointing up a layer (docs/design/architecture.md):\n" + "\n".join(
        upward
    )


def _unexplained_cycles(edges: list[Edge]) -> list[list[str]]:
    return [
        component
        for component in cycles(edges)
        if not any(set(component) <= known for known in KNOWN_CYCLES)
    ]


def test_no_import_cycle() -> None:
    """An allowed upward import (``ALLOWED_UPWARD``) is lazy and reviewed: it is left out."""
    edges = [edge for edge in import_edges() if not _allowed_upward(edge)]
    found = _unexplained_cycles(edges)
    described = []
    for component in found:
        members = set(component)
        inside = [
            _describe(edge) for edge in edges if edge.source in members and edge.target in members
        ]
        described.append(f"cycle among {component}:\n  " + "\n  ".join(inside))
    assert found == [], "import cycles (docs/design/architecture.md):\n" + "\n".join(described)


def test_known_cycles_are_still_there() -> None:
    """A cycle broken leaves ``KNOWN_CYCLES``: the list only shrinks."""
    found = cycles([edge for edge in import_edges() if not _allowed_upward(edge)])
    stale = [sorted(known) for known in KNOWN_CYCLES if not any(set(c) & known for c in found)]
    assert stale == [], f"cycles broken: remove them from KNOWN_CYCLES: {stale}"


def test_run_time_cycles_are_the_known_ones() -> None:
    """Without the type-only edges, the loops left are exactly ``KNOWN_RUNTIME_CYCLES``."""
    edges = [e for e in import_edges() if e.kind != "type_checking" and not _allowed_upward(e)]
    found = {frozenset(component) for component in cycles(edges)}
    known = set(KNOWN_RUNTIME_CYCLES)
    new, gone = sorted(map(sorted, found - known)), sorted(map(sorted, known - found))
    assert found == known, f"run-time import cycles: new {new}; gone (remove them) {gone}"


def test_function_level_imports_say_why() -> None:
    """Each import inside a function is ``# lazy:`` (start-up time, an optional driver) or
    part of a cycle still to break (``KNOWN_CYCLES``); any other belongs at module level,
    or the lower module should be handed what it needs."""
    edges = [edge for edge in import_edges() if edge.kind == "function" and not edge.lazy]
    in_cycle = {
        (edge.source, edge.line)
        for edge in edges
        if any({edge.source, edge.target} <= known for known in KNOWN_CYCLES)
    }
    unmarked = [
        _describe(edge)
        for edge in edges
        if (edge.source, edge.line) not in in_cycle
        and not any(edge.source.startswith(prefix + ".") for prefix in DEFERRED_ELSEWHERE)
    ]
    assert unmarked == [], (
        "function-level imports without a '# lazy: <reason>' comment:\n" + "\n".join(unmarked)
    )


def test_the_graph_sees_every_kind_of_import() -> None:
    kinds = {edge.kind for edge in import_edges()}
    assert "module" in kinds
    assert layer_of("celeriac.transports.redis.consumer") == layer_of("celeriac.transports")
    assert layer_of("celeriac.app.base") > layer_of("celeriac.task") > layer_of("celeriac.backends")
    assert layer_of("celeriac.worker.consumer") > layer_of("celeriac.app.base")
