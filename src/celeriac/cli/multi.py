"""``celeriac multi``: start, stop, restart and show several named workers in the background.

    celeriac multi start w1 w2 -A proj -l info -c 2
    celeriac multi start 3 -A proj          # nodes celeriac1, celeriac2, celeriac3
    celeriac multi stop w1 w2
    celeriac multi show 2 -A proj

Each node runs ``celeriac -A proj worker --detach -n <node>@%h --pidfile <node>.pid
--logfile <node>.log`` plus the options given; ``--pidfile``/``--logfile`` patterns may use
``%n`` (node name).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import click

from celeriac.cli.daemon import Pidfile
from celeriac.cli.progress import Activity

__all__ = ["multi"]


def _nodes(spec: tuple[str, ...]) -> tuple[list[str], list[str]]:
    """Split ``NODES... [worker options]`` into node names and the options after them."""
    names: list[str] = []
    rest = list(spec)
    while rest and not rest[0].startswith("-"):
        names.append(rest.pop(0))
    if len(names) == 1 and names[0].isdigit():
        names = [f"celeriac{i}" for i in range(1, int(names[0]) + 1)]
    if not names:
        raise click.UsageError("Name the nodes (w1 w2 ...) or give a count (3)")
    return names, rest


def _option(rest: list[str], *flags: str, default: str) -> str:
    for i, arg in enumerate(rest):
        for flag in flags:
            if arg == flag and i + 1 < len(rest):
                return rest[i + 1]
            if arg.startswith(flag + "="):
                return arg.split("=", 1)[1]
    return default


def _worker_argv(node: str, rest: list[str]) -> list[str]:
    app_args: list[str] = []
    worker_args: list[str] = []
    i = 0
    while i < len(rest):
        arg = rest[i]
        if arg in ("-A", "--app", "-b", "--broker") and i + 1 < len(rest):
            app_args += [arg, rest[i + 1]]
            i += 2
            continue
        worker_args.append(arg)
        i += 1
    pidfile = _option(rest, "--pidfile", default="%n.pid").replace("%n", node)
    logfile = _option(rest, "-f", "--logfile", default="%n.log").replace("%n", node)
    worker_args = [a for a in worker_args if not a.startswith(("--pidfile", "--logfile"))]
    return [
        sys.executable,
        "-m",
        "celeriac",
        *app_args,
        "worker",
        "--detach",
        "-n",
        f"{node}@%h",
        "--pidfile",
        pidfile,
        "--logfile",
        logfile,
        *worker_args,
    ]


@click.group()
def multi() -> None:
    """Start, stop, restart and show several named workers in the background."""


@multi.command(context_settings={"ignore_unknown_options": True})
@click.argument("spec", nargs=-1, type=click.UNPROCESSED)
def show(spec: tuple[str, ...]) -> None:
    """Print the command each node would run."""
    names, rest = _nodes(spec)
    for node in names:
        click.echo(" ".join(_worker_argv(node, rest)))


@multi.command(context_settings={"ignore_unknown_options": True})
@click.argument("spec", nargs=-1, type=click.UNPROCESSED)
def start(spec: tuple[str, ...]) -> None:
    """Start the nodes in the background."""
    names, rest = _nodes(spec)
    failed = 0
    with Activity("Starting") as activity:
        for count, node in enumerate(names):
            activity.update(f"Starting {node}", (count, len(names)))
            done = subprocess.run(_worker_argv(node, rest), check=False)
            activity.clear()
            click.echo(f"> {node}: {'OK' if done.returncode == 0 else 'FAILED'}")
            failed += done.returncode != 0
    if failed:
        raise SystemExit(1)


def _stop(names: list[str], rest: list[str], timeout: float) -> None:
    waiting: dict[str, Pidfile] = {}
    for node in names:
        pidfile = Pidfile(_option(rest, "--pidfile", default="%n.pid").replace("%n", node))
        pid = pidfile.read()
        if pid is None or not pidfile.is_alive():
            click.echo(f"> {node}: not running")
            continue
        os.kill(pid, signal.SIGTERM)
        waiting[node] = pidfile
    deadline = time.monotonic() + timeout
    total = len(waiting)
    with Activity("Stopping") as activity:
        while waiting and time.monotonic() < deadline:
            activity.update(
                f"Waiting for {len(waiting)} node(s) to stop", (total - len(waiting), total)
            )
            for node, pidfile in list(waiting.items()):
                if not pidfile.is_alive():
                    activity.clear()
                    click.echo(f"> {node}: stopped")
                    del waiting[node]
            time.sleep(0.1)
    for node in waiting:
        click.echo(f"> {node}: still running after {timeout:.0f}s")


@multi.command(context_settings={"ignore_unknown_options": True})
@click.argument("spec", nargs=-1, type=click.UNPROCESSED)
def stop(spec: tuple[str, ...]) -> None:
    """Stop the nodes warmly (SIGTERM) and wait for them."""
    names, rest = _nodes(spec)
    _stop(names, rest, timeout=60)


@multi.command(context_settings={"ignore_unknown_options": True})
@click.argument("spec", nargs=-1, type=click.UNPROCESSED)
@click.pass_context
def restart(ctx: click.Context, spec: tuple[str, ...]) -> None:
    """Stop the nodes, then start them again."""
    names, rest = _nodes(spec)
    _stop(names, rest, timeout=60)
    ctx.invoke(start, spec=spec)
