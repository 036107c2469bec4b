"""``celeriac events``: watch the cluster live, or dump its events.

    celeriac -A proj events                # a live view of workers and tasks (Ctrl-C quits)
    celeriac -A proj events --dump         # every event on one line as it arrives
    celeriac -A proj events --dump --json  # the same as JSON objects, one per line

The live view folds events into a ``State`` (on a receiver thread) and redraws the screen
in place every ``--frequency`` seconds with plain ANSI escapes: workers with their status,
load and last heartbeat, then the latest tasks, newest first. Workers send task events
only with ``-E``; ``celeriac control enable_events`` switches them on at run time.
"""

from __future__ import annotations

import datetime as dt
import json
import shutil
import sys
import threading
import time
from typing import Any

import click

from celeriac.events.state import State, Task, Worker
from celeriac.exceptions import CeleryError

__all__ = ["events", "format_event", "render"]

_CLEAR = "\x1b[H\x1b[2J"
_COLOURS = {"SUCCESS": 32, "FAILURE": 31, "REVOKED": 35, "STARTED": 33, "RETRY": 33}


def format_event(event: dict[str, Any]) -> str:
    """One line for ``--dump``: ``host [time] type: field=value, ...``."""
    fields = dict(event)
    fields.pop("local_received", None)
    kind = fields.pop("type", "?")
    host = fields.pop("hostname", "?")
    stamp = fields.pop("timestamp", None)
    when = dt.datetime.fromtimestamp(stamp, dt.UTC).isoformat() if stamp else "?"
    shown = ", ".join(f"{key}={fields[key]}" for key in sorted(fields))
    return f"{host} [{when}] {kind}: {shown}"


def _cut(text: Any, width: int) -> str:
    value = "" if text is None else str(text)
    return value if len(value) <= width else value[: max(width - 1, 0)] + "…"


def _worker_row(worker: Worker, now: float) -> str:
    load = " ".join(f"{x:.2f}" for x in worker.loadavg or [])
    beat = f"{now - worker.heartbeats[-1]:.1f}s ago" if worker.heartbeats else "-"
    return (
        f"{_cut(worker.hostname, 28):<28} {worker.status_string:<8} {worker.active or 0:>6} "
        f"{worker.processed or 0:>9}  {load:<16} {beat}"
    )


def _task_row(task: Task, colour: bool, width: int) -> str:
    state = f"{task.state:<9}"
    worker = task.worker.hostname if task.worker else (task.client or "")
    runtime = f"{task.runtime:.3f}s" if task.runtime is not None else ""
    outcome = task.result if task.state == "SUCCESS" else task.exception
    row = _cut(
        f"{_cut(task.uuid, 36):<36} {_cut(task.name, 26):<26} {state} "
        f"{_cut(worker, 20):<20} {runtime:>9} {outcome or ''}",
        width,
    )
    if colour and task.state in _COLOURS:  # after cutting: escapes take no room on screen
        row = row.replace(state, f"\x1b[{_COLOURS[task.state]}m{state}\x1b[0m", 1)
    return row


def render(
    state: State, *, now: float, width: int = 120, height: int = 40, colour: bool = False
) -> str:
    """One frame of the live view (pure: the caller prints it)."""
    workers = sorted(state.workers.values(), key=lambda w: str(w.hostname))
    alive = sum(1 for worker in workers if worker.alive)
    stamp = dt.datetime.fromtimestamp(now, dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    lines = [
        f"celeriac events: {alive} of {len(workers)} workers online, {state.event_count} events, "
        f"{len(state.tasks)} tasks   {stamp}",
        "",
        f"{'WORKER':<28} {'STATUS':<8} {'ACTIVE':>6} {'PROCESSED':>9}  {'LOAD':<16} HEARTBEAT",
        *(_worker_row(worker, now) for worker in workers),
        "",
        f"{'TASK':<36} {'NAME':<26} {'STATE':<9} {'WORKER':<20} {'RUNTIME':>9} RESULT",
    ]
    room = max(height - len(lines) - 1, 1)
    lines += [_task_row(task, colour, width) for _, task in state.tasks_by_time(limit=room)]
    return "\n".join(lines)


def _app(ctx: click.Context) -> Any:
    root = ctx.find_root().obj
    if root is None or not hasattr(root, "app"):
        raise click.UsageError("run this through the celeriac command: celeriac -A proj events")
    return root.app


def _stop_after(receiver: Any, duration: float | None) -> threading.Timer | None:
    if duration is None:
        return None
    timer = threading.Timer(duration, lambda: setattr(receiver, "should_stop", True))
    timer.daemon = True
    timer.start()
    return timer


def _dump(app: Any, as_json: bool, limit: int | None, duration: float | None) -> None:
    def show(event: dict[str, Any]) -> None:
        click.echo(json.dumps(event, default=str) if as_json else format_event(event))

    with app.events.Receiver(handlers={"*": show}) as receiver:
        receiver.subscribe()  # then say so: what is sent from now on is shown
        click.echo("-> events: starting capture...", err=as_json)
        timer = _stop_after(receiver, duration)
        receiver.capture(limit=limit)
        if timer is not None:
            timer.cancel()


def _live(app: Any, frequency: float, limit: int | None, duration: float | None) -> None:
    state = State()
    receiver = app.events.Receiver(handlers={"*": state.event})
    failure: list[BaseException] = []
    _stop_after(receiver, duration)

    def capture() -> None:
        try:
            receiver.capture(limit=limit)
        except BaseException as exc:  # shown by the main thread
            failure.append(exc)

    thread = threading.Thread(target=capture, name="EventsReceiver", daemon=True)
    thread.start()
    tty = sys.stdout.isatty()
    try:
        while thread.is_alive():
            thread.join(frequency)
            size = shutil.get_terminal_size((120, 40))
            frame = render(
                state, now=time.time(), width=size.columns, height=size.lines, colour=tty
            )
            click.echo((_CLEAR if tty else "\n") + frame)
    except KeyboardInterrupt:
        receiver.should_stop = True
    finally:
        receiver.should_stop = True
        thread.join(2)
        receiver.close()
    if failure and isinstance(failure[0], CeleryError):
        raise click.ClickException(str(failure[0]))


@click.command()
@click.option("-d", "--dump", is_flag=True, help="Print each event on one line as it comes.")
@click.option("-j", "--json", "as_json", is_flag=True, help="With --dump: JSON, one per line.")
@click.option(
    "-F",
    "--frequency",
    "--freq",
    type=click.FloatRange(min=0.1),
    default=1.0,
    show_default=True,
    help="Live view: seconds between redraws.",
)
@click.option("--limit", type=click.IntRange(min=1), help="Stop after this many events.")
@click.option("--duration", type=click.FloatRange(min=0), help="Stop after this many seconds.")
@click.pass_context
def events(
    ctx: click.Context,
    dump: bool,
    as_json: bool,
    frequency: float,
    limit: int | None,
    duration: float | None,
) -> None:
    """Watch workers and tasks live (or --dump the raw events)."""
    app = _app(ctx)
    try:
        if dump or as_json:
            _dump(app, as_json, limit, duration)
        else:
            _live(app, frequency, limit, duration)
    except CeleryError as exc:
        raise click.ClickException(str(exc)) from exc
    except KeyboardInterrupt:
        pass
