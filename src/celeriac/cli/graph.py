"""``celeriac graph``: the worker's parts and the cluster as Graphviz dot, as Celery prints.

``graph bootsteps`` draws the parts a worker starts (``celeriac.worker.lifecycle`` starts them
in this order; an edge points at what a part needs), in place of Celery's bootstep blueprint:
Celeriac has no bootsteps, so the names are its own. ``graph workers`` draws the broker, the
result backend, and each worker with its pool processes, from ``inspect stats`` replies or
from ``nodes:w1,w2 threads:2,2`` arguments, as Celery's does. Render with
``celeriac graph bootsteps | dot -Tpng -o steps.png``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import click

from celeriac.worker.banner import describe_url

__all__ = ["graph"]

#: The worker's parts in start order, each with the parts it needs.
WORKER_PARTS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("Imports", ()),
    ("Transport", ("Imports",)),
    ("ResultBackend", ("Imports",)),
    ("Queues", ("Transport",)),
    ("Consumer", ("Queues",)),
    ("StateDB", ("Consumer",)),
    ("Events", ("Transport",)),
    ("Pool", ("Consumer",)),
    ("Control", ("Events", "Consumer")),
    ("Mingle", ("Control", "StateDB")),
    ("LeaseRenewer", ("Consumer",)),
    ("Heart", ("Events",)),
    ("Beat", ("Pool",)),
)

_BASE = {"shape": "box", "arrowhead": "vee", "style": "filled", "fontname": "HelveticaNeue"}
_NODE = {"fillcolor": "palegreen3", "color": "palegreen4"}
_TERMINAL = {"fillcolor": "palegreen1", "color": "palegreen2"}
_EDGE = {"color": "darkseagreen4", "arrowcolor": "black", "arrowsize": 0.7}
_BROKER = {"shape": "circle", "fillcolor": "cadetblue3", "color": "cadetblue4", "height": 1}
_BACKEND = {"shape": "folder", "width": 2, "height": 1, "color": "black", "fillcolor": "peachpuff3"}
_THREAD = {
    "fillcolor": "lightcyan4",
    "fontcolor": "yellow",
    "shape": "oval",
    "fontsize": 10,
    "width": 0.3,
    "color": "black",
}


def _attrs(*schemes: Mapping[str, Any]) -> str:
    merged: dict[str, Any] = dict(_BASE)
    for scheme in schemes:
        merged.update(scheme)
    return ", ".join(f'{name}="{value}"' for name, value in merged.items())


class Dot:
    """A dot ``digraph dependencies`` in Celery's layout: nodes first seen, then edges."""

    def __init__(self, root: str | None) -> None:
        self.lines = [
            "digraph dependencies {",
            f"    graph [{_attrs({'bgcolor': 'mintcream', 'root': root})}]",
        ]
        self._seen: set[str] = set()

    def node(self, name: str, *schemes: Mapping[str, Any]) -> None:
        if name not in self._seen:
            self._seen.add(name)
            self.lines.append(f'    "{_quoted(name)}" [{_attrs(*schemes)}]')

    def edge(self, a: str, b: str, *schemes: Mapping[str, Any]) -> None:
        self.lines.append(f'    "{_quoted(a)}" -> "{_quoted(b)}" [{_attrs(_EDGE, *schemes)}]')

    def text(self) -> str:
        return "\n".join([*self.lines, "}"])


def _quoted(name: str) -> str:
    return name.replace("\\", "\\\\").replace('"', '\\"')


def bootsteps_dot(parts: Iterable[tuple[str, tuple[str, ...]]] = WORKER_PARTS) -> str:
    dot = Dot("Worker")
    for name, needs in parts:
        dot.node(name, _NODE if needs else _TERMINAL)
        for need in needs:
            dot.edge(name, need)
    return dot.text()


_SUBSCRIPTS = str.maketrans("0123456789", "₀₁₂₃₄₅₆₇₈₉")


def abbreviate(items: list[Any], name: str, limit: int, enumerate_: bool = False) -> list[Any]:
    """Celery's abbreviation of long lists: past ``limit`` items, the first ``limit - 1``,
    then one ``W⎨…n⎬`` standing for the n left out, then the last (``limit`` 0: no limit);
    with ``enumerate_``, items are named ``<name>₁``, ``<name>₂``, ..."""
    size = len(items)
    if enumerate_:
        items = [f"{name}{str(i + 1).translate(_SUBSCRIPTS)}" for i in range(size)]
    if limit and size > limit:
        items = [*items[: limit - 1], items[-1]]
        items[limit - 2] = f"{name[0]}⎨…{str(size - (limit - 1)).translate(_SUBSCRIPTS)}⎬"
    return list(items)


def workers_dot(
    workers: list[tuple[str, int]],
    broker: str,
    backend: str | None,
    *,
    wmax: int = 4,
    tmax: int = 3,
    enumerate_: bool = False,
) -> str:
    names = abbreviate([name for name, _ in workers], "Worker", wmax, enumerate_)
    counts = [count for _, count in workers]
    if wmax and len(workers) > wmax:
        counts = [*counts[:3], counts[-1]]
    dot = Dot(None)
    dot.node(broker, _TERMINAL, _BROKER)
    if backend:
        dot.node(backend, _TERMINAL, _BACKEND)
    thread_ids = 0
    for name, processes in zip(names, counts, strict=False):
        dot.node(name, _NODE)
        dot.edge(name, broker)
        if backend:
            dot.edge(name, backend)
        for label in abbreviate(list(range(processes)), "P", tmax, enumerate_):
            thread_ids += 1
            thread = f"thr-{thread_ids}"
            dot.node(thread, _NODE, _THREAD, {"label": label})
            dot.edge(thread, name, {"arrowhead": "none", "arrowtail": "tee"})
    return dot.text()


@click.group()
def graph() -> None:
    """Print a graph (Graphviz dot) of the worker's parts or of the running workers."""


@graph.command()
def bootsteps() -> None:
    """The parts a worker starts, and what each needs (Celeriac's names; no bootsteps)."""
    click.echo(bootsteps_dot())


def _arguments(args: Iterable[str]) -> dict[str, list[str]]:
    """Celery's ``key:value`` arguments (``nodes:w1,w2 threads:2,2 wmax:4``)."""
    found: dict[str, list[str]] = {}
    for arg in args:
        key, _, value = arg.partition(":")  # a bare word (``enumerate``) is a flag
        found[key] = [part for part in value.split(",") if part]
    unknown = set(found) - {
        "nodes",
        "threads",
        "broker",
        "backend",
        "wmax",
        "tmax",
        "enumerate",
        "generic",
    }
    if unknown:
        raise click.BadParameter(
            f"unknown argument(s) {', '.join(sorted(unknown))}; use nodes:, threads:, "
            "broker:, backend:, wmax:, tmax:, enumerate"
        )
    return found


@graph.command(context_settings={"ignore_unknown_options": True})
@click.argument("args", nargs=-1)
@click.pass_obj
def workers(ctx: Any, args: tuple[str, ...]) -> None:
    """The broker, the result backend, and each worker with its pool processes.

    ARGS, as Celery's: nodes:NAME,... threads:N,... broker:URL backend:URL; without nodes,
    the running workers answer inspect stats.
    """
    options = _arguments(args)
    app = ctx.app
    if "nodes" in options:
        names = options["nodes"]
        counts = [int(n) for n in options.get("threads", [])] + [0] * len(names)
        found = list(zip(names, counts, strict=False))
    else:
        replies = app.control.inspect(timeout=1.0).stats() or {}
        found = [
            (node, int((reply.get("pool") or {}).get("max-concurrency") or 0))
            for node, reply in sorted(replies.items())
        ]
    broker = (options.get("broker") or [describe_url(app.broker_url)])[0]
    backend_url = app.conf.result_backend  # the setting, as Celery draws it
    backend = (options.get("backend") or [describe_url(backend_url) if backend_url else ""])[0]
    if "generic" in options:  # Celery's: the kind and scheme only, "Broker (redis://)"
        broker = f"Broker ({broker.split('://')[0]}://)"
        backend = backend and f"Backend ({backend.split('://')[0]}://)"
    limits = {key: int((options.get(key) or ["0"])[0] or 0) for key in ("wmax", "tmax")}
    click.echo(
        workers_dot(
            found,
            broker,
            backend or None,
            wmax=limits["wmax"] if "wmax" in options else 4,
            tmax=limits["tmax"] if "tmax" in options else 3,
            enumerate_="enumerate" in options,
        )
    )
