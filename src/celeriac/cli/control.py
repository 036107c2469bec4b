"""``celeriac inspect``, ``celeriac control`` and ``celeriac status``: Celery's remote control
from the command line.

    celeriac -A proj status
    celeriac -A proj inspect active -d w1@host -t 2
    celeriac -A proj inspect registered --json
    celeriac -A proj control rate_limit proj.tasks.add 10/m
    celeriac -A proj control revoke <id> <id> --terminate --signal SIGKILL
    celeriac -A proj control pool_grow 2

Each reply is printed as it arrives (``-> w1@host: OK`` and the reply, indented), then how
many nodes answered; ``--json`` prints ``{node: reply}`` as one JSON object instead. When no
node answers within the timeout the command fails with exit status 69, as Celery's does.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import click

from celeriac.cli.progress import Activity
from celeriac.exceptions import CeleryError

__all__ = ["COMMANDS", "control", "inspect", "status"]

EX_UNAVAILABLE = 69


@dataclass(frozen=True)
class Spec:
    """How the command line spells a remote command: positional arguments and their types."""

    kind: str  # inspect or control
    args: tuple[tuple[str, Callable[[str], Any]], ...] = ()
    variadic: str | None = None  # the name taking every remaining argument
    signature: str = ""
    help: str = ""


class NoReplies(click.ClickException):
    exit_code = EX_UNAVAILABLE


def _bool(text: str) -> bool:
    return text.lower() in ("1", "true", "yes", "on")


COMMANDS: dict[str, Spec] = {
    "active": Spec("inspect", help="Tasks running now."),
    "active_queues": Spec("inspect", help="Queues each worker consumes."),
    "clock": Spec("inspect", help="The worker's logical clock."),
    "conf": Spec(
        "inspect",
        (("with_defaults", _bool),),
        signature="[include_defaults=False]",
        help="The worker's configuration.",
    ),
    "ping": Spec("inspect", help="Ping the workers."),
    "query_task": Spec(
        "inspect",
        variadic="ids",
        signature="<id> [id ...]",
        help="What the workers know of these tasks.",
    ),
    "registered": Spec(
        "inspect",
        variadic="taskinfoitems",
        signature="[attr ...]",
        help="Registered task names (with these attributes).",
    ),
    "report": Spec("inspect", help="Versions and settings, for bug reports."),
    "reserved": Spec("inspect", help="Tasks received but not started."),
    "revoked": Spec("inspect", help="Ids in the worker's revoked set."),
    "scheduled": Spec("inspect", help="ETA tasks the worker holds."),
    "stats": Spec("inspect", help="Worker statistics (pool, totals, rusage, ...)."),
    "add_consumer": Spec(
        "control",
        (("queue", str), ("exchange", str), ("exchange_type", str), ("routing_key", str)),
        signature="<queue> [exchange [type [routing_key]]]",
        help="Start consuming from a queue.",
    ),
    "autoscale": Spec(
        "control",
        (("max", int), ("min", int)),
        signature="[max [min]]",
        help="Change the autoscale bounds.",
    ),
    "cancel_consumer": Spec(
        "control", (("queue", str),), signature="<queue>", help="Stop consuming from a queue."
    ),
    "disable_events": Spec("control", help="Stop sending task events."),
    "enable_events": Spec("control", help="Start sending task events."),
    "heartbeat": Spec("control", help="Send a heartbeat now."),
    "pool_grow": Spec("control", (("n", int),), signature="[N=1]", help="Add pool slots."),
    "pool_shrink": Spec("control", (("n", int),), signature="[N=1]", help="Remove pool slots."),
    "rate_limit": Spec(
        "control",
        (("task_name", str), ("rate_limit", str)),
        signature="<task_name> <rate_limit (e.g. 5/s | 5/m | 5/h)>",
        help="Set a task type's rate limit.",
    ),
    "revoke": Spec(
        "control",
        variadic="task_id",
        signature="<id> [id ...]",
        help="Revoke tasks (--terminate stops running ones).",
    ),
    "shutdown": Spec("control", help="Shut the workers down (warm)."),
    "terminate": Spec(
        "control",
        (("signal", str),),
        variadic="task_id",
        signature="<signal> <id> [id ...]",
        help="Stop running tasks.",
    ),
    "time_limit": Spec(
        "control",
        (("task_name", str), ("soft", float), ("hard", float)),
        signature="<task_name> <soft_secs> [hard_secs]",
        help="Set a task type's time limits.",
    ),
}


def compile_arguments(command: str, args: tuple[str, ...]) -> dict[str, Any]:
    """The command's keyword arguments from the words after it on the command line."""
    spec = COMMANDS[command]
    rest = list(args)
    arguments: dict[str, Any] = {}
    for name, convert in spec.args:
        if not rest:
            break
        word = rest.pop(0)
        try:
            arguments[name] = convert(word)
        except ValueError:
            raise click.BadParameter(f"{word!r} for {name}", param_hint=command) from None
    if spec.variadic:
        arguments[spec.variadic] = rest
    elif rest:
        raise click.UsageError(f"{command} takes: {spec.signature or 'no arguments'}")
    return arguments


def _app(ctx: click.Context) -> Any:
    root = ctx.find_root().obj
    if root is None or not hasattr(root, "app"):
        raise click.UsageError("run this through the celeriac command: celeriac -A proj ...")
    return root.app


# -- output ------------------------------------------------------------------------------------


def _indent(text: str, width: int = 4) -> str:
    return "\n".join(" " * width + line for line in text.splitlines())


def _request_line(item: dict[str, Any]) -> str:
    request = item.get("request", item)
    line = f"{request.get('name')}[{request.get('id')}] args={request.get('args')!s} "
    line += f"kwargs={request.get('kwargs')!s}"
    if "eta" in item:
        line += f" eta={item['eta']}"
    if request.get("worker_pid"):
        line += f" pid={request['worker_pid']}"
    return line


def pretty(reply: Any) -> tuple[str, str]:
    """``(status, text)`` for one node's reply, as Celery's CLI prints it."""
    if isinstance(reply, dict) and ("ok" in reply or "error" in reply):
        status = "OK" if "ok" in reply else "ERROR"
        return status, pretty(reply.get("ok", reply.get("error")))[1]
    if isinstance(reply, list):
        if not reply:
            return "OK", "- empty -"
        lines = [_request_line(i) if isinstance(i, dict) else str(i) for i in reply]
        return "OK", "\n".join(f"* {line}" for line in lines)
    if isinstance(reply, dict):
        return "OK", json.dumps(reply, sort_keys=True, indent=4, default=str)
    return "OK", "" if reply is None else str(reply)


def _printer(
    show_reply: bool, activity: Activity | None = None
) -> Callable[[dict[str, Any]], None]:
    def say(body: dict[str, Any]) -> None:
        if activity is not None:
            activity.clear()
        for node, reply in body.items():
            status, text = pretty(reply)
            click.echo(f"-> {node}: {status}")
            if show_reply and text:
                click.echo(_indent(text))

    return say


def _finish(replies: dict[str, Any] | None, as_json: bool) -> None:
    if not replies:
        raise NoReplies("No nodes replied within time constraint")
    if as_json:
        click.echo(json.dumps(replies, default=str))
        return
    count = len(replies)
    click.echo(f"\n{count} {'node' if count == 1 else 'nodes'} online.")


def _flat(replies: list[dict[str, Any]] | None) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for item in replies or []:
        found.update(item)
    return found


def _list_commands(kind: str) -> Callable[[click.Context, click.Parameter, bool], None]:
    def callback(ctx: click.Context, _param: click.Parameter, value: bool) -> None:
        if not value:
            return
        for name, spec in COMMANDS.items():
            if spec.kind == kind:
                click.echo(f"{name + ' ' + spec.signature:<58} {spec.help}")
        ctx.exit()

    return callback


def _options(kind: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    def decorate(fun: Callable[..., Any]) -> Callable[..., Any]:
        for option in reversed(
            [
                click.option(
                    "-t",
                    "--timeout",
                    type=float,
                    default=1.0,
                    show_default=True,
                    help="Seconds to wait for replies.",
                ),
                click.option("-d", "--destination", help="Comma-separated node names to ask."),
                click.option(
                    "-j", "--json", "as_json", is_flag=True, help="Print replies as JSON."
                ),
                click.option(
                    "--list",
                    is_flag=True,
                    expose_value=False,
                    is_eager=True,
                    callback=_list_commands(kind),
                    help=f"List the {kind} commands.",
                ),
            ]
        ):
            fun = option(fun)
        return fun

    return decorate


def _destination(value: str | None) -> list[str] | None:
    names = [name.strip() for name in (value or "").split(",") if name.strip()]
    return names or None


def _check(command: str, kind: str) -> None:
    spec = COMMANDS.get(command)
    if spec is None or spec.kind != kind:
        known = ", ".join(name for name, s in COMMANDS.items() if s.kind == kind)
        raise click.UsageError(f"Unknown {kind} command {command!r}. Known: {known}")


# -- the commands ------------------------------------------------------------------------------


@click.command()
@click.argument("command")
@click.argument("args", nargs=-1)
@_options("inspect")
@click.pass_context
def inspect(
    ctx: click.Context,
    command: str,
    args: tuple[str, ...],
    timeout: float,
    destination: str | None,
    as_json: bool,
) -> None:
    """Ask the workers COMMAND (read-only): active, stats, registered, ... (see --list)."""
    _check(command, "inspect")
    arguments = compile_arguments(command, args)
    app = _app(ctx)
    try:
        with Activity(f"inspect {command}: waiting {timeout:g}s for replies") as activity:
            replies = app.control.broadcast(
                command,
                arguments=arguments,
                destination=_destination(destination),
                reply=True,
                timeout=timeout,
                callback=None if as_json else _printer(True, activity),
            )
    except CeleryError as exc:
        raise click.ClickException(f"inspect {command}: {exc}") from exc
    _finish(_flat(replies), as_json)


@click.command()
@click.argument("command")
@click.argument("args", nargs=-1)
@click.option("--terminate", is_flag=True, help="revoke: also stop tasks that are running.")
@click.option(
    "--signal",
    "signal_name",
    default="SIGTERM",
    show_default=True,
    help="revoke --terminate: the signal for prefork children.",
)
@_options("control")
@click.pass_context
def control(
    ctx: click.Context,
    command: str,
    args: tuple[str, ...],
    terminate: bool,
    signal_name: str,
    timeout: float,
    destination: str | None,
    as_json: bool,
) -> None:
    """Tell the workers to COMMAND: revoke, rate_limit, pool_grow, shutdown, ... (see --list)."""
    _check(command, "control")
    arguments = compile_arguments(command, args)
    app = _app(ctx)
    options: dict[str, Any] = {
        "destination": _destination(destination),
        "reply": True,
        "timeout": timeout,
        "callback": None if as_json else _printer(True),
    }
    try:
        if command in ("revoke", "terminate"):  # also marks the result store
            ids = arguments.get("task_id") or []
            if not ids:
                raise click.UsageError(f"{command} needs task ids")
            stop = terminate or command == "terminate"
            signal = arguments.get("signal", signal_name)
            replies = app.control.revoke(ids, terminate=stop, signal=signal, **options)
        else:
            replies = app.control.broadcast(command, arguments=arguments, **options)
    except CeleryError as exc:
        raise click.ClickException(f"control {command}: {exc}") from exc
    _finish(_flat(replies), as_json)


@click.command()
@click.option(
    "-t",
    "--timeout",
    type=float,
    default=1.0,
    show_default=True,
    help="Seconds to wait for replies.",
)
@click.option("-d", "--destination", help="Comma-separated node names to ask.")
@click.option("-j", "--json", "as_json", is_flag=True, help="Print the replies as JSON.")
@click.pass_context
def status(ctx: click.Context, timeout: float, destination: str | None, as_json: bool) -> None:
    """List the workers that are online (they answer a ping)."""
    app = _app(ctx)
    try:
        replies = app.control.broadcast(
            "ping",
            destination=_destination(destination),
            reply=True,
            timeout=timeout,
            callback=None if as_json else _printer(False),
        )
    except CeleryError as exc:
        raise click.ClickException(f"status: {exc}") from exc
    _finish(_flat(replies), as_json)
