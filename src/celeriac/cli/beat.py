"""``celeriac beat``: run the periodic task scheduler, or edit its schedule while it runs.

celeriac -A proj beat -l info                   run (as many as you like: one leads)
celeriac -A proj beat list                      configured and added entries, with state
celeriac -A proj beat add NAME -t proj.tasks.add --every 30s --args '[2, 2]'
celeriac -A proj beat add NAME -t proj.tasks.report --cron '0 3 * * mon-fri' --queue reports
celeriac -A proj beat remove|enable|disable|run-now NAME

The schedule store is found as ``celeriac.beat.service`` says (``-s PATH`` to choose);
running beats see edits within a second.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import json
import os
import signal
import threading
from collections.abc import Iterator
from typing import Any

import click

from celeriac._version import __version__
from celeriac.beat.lease import DEFAULT_LEASE_TTL
from celeriac.beat.options import BeatOptions
from celeriac.beat.service import Beat, describe_entries, open_store, prepare_app, store_location
from celeriac.beat.store import ScheduleStore
from celeriac.cli.daemon import Pidfile
from celeriac.cli.daemon import detach as daemonize
from celeriac.exceptions import CeleryError
from celeriac.periodic.entries import entry_from_definition
from celeriac.periodic.schedules import crontab

__all__ = ["beat"]

_SCHEDULE_HELP = "The schedule store (an SQLite file); default: the SQLite broker's file."


def _app(ctx: click.Context) -> Any:
    """The app of the main group's context (``-A``)."""
    root = ctx.find_root().obj
    if root is None or not hasattr(root, "app"):
        raise click.UsageError("run beat through the celeriac command: celeriac -A proj beat")
    return root.app


@contextlib.contextmanager
def _editing(ctx: click.Context, schedule: str | None) -> Iterator[tuple[Any, ScheduleStore]]:
    """The app (configured, tasks imported) and its schedule store, errors made readable."""
    app = _app(ctx)
    schedule, scheduler = _where(ctx, schedule)
    try:
        prepare_app(app)
        store, lease = open_store(app, schedule, scheduler=scheduler)
    except CeleryError as exc:
        raise click.ClickException(str(exc)) from exc
    try:
        yield app, store
    except CeleryError as exc:
        raise click.ClickException(str(exc)) from exc
    finally:
        store.close()
        lease.close()


class _BeatFlags:
    """The group's ``-s`` and ``-S``, for the subcommands."""

    def __init__(self, schedule: str | None, scheduler: str | None) -> None:
        self.schedule = schedule
        self.scheduler = scheduler


def _where(ctx: click.Context, schedule: str | None) -> tuple[str | None, str | None]:
    """(schedule, scheduler): the subcommand's ``-s``, else the group's; the group's ``-S``."""
    group = ctx.find_object(_BeatFlags)
    if group is None:
        return schedule, None
    return schedule or group.schedule, group.scheduler


schedule_option = click.option("-s", "--schedule", "schedule", metavar="PATH", help=_SCHEDULE_HELP)


@click.group(invoke_without_command=True)
@schedule_option
@click.option(
    "-S",
    "--scheduler",
    metavar="NAME",
    help="beat_scheduler: 'django' keeps periodic tasks in the Django admin (docs/django.md).",
)
@click.option("--max-interval", type=float, help="Longest sleep between checks (seconds).")
@click.option("-l", "--loglevel", default="WARNING", show_default=True, help="Logging level.")
@click.option("-f", "--logfile", type=click.Path(dir_okay=False), help="Log to this file.")
@click.option("--detach", is_flag=True, help="Run in the background (log with -f).")
@click.option(
    "--pidfile",
    type=click.Path(dir_okay=False),
    help="Write the pid here; refuse to start while the pid in it is alive.",
)
@click.option(
    "--lease-ttl",
    type=click.FloatRange(min=0.5),
    default=DEFAULT_LEASE_TTL,
    show_default=True,
    help="Seconds before a standby beat replaces a dead leader.",
)
@click.pass_context
def beat(
    ctx: click.Context,
    schedule: str | None,
    max_interval: float | None,
    loglevel: str,
    logfile: str | None,
    detach: bool,
    pidfile: str | None,
    lease_ttl: float,
    scheduler: str | None = None,
) -> None:
    """Run the periodic task scheduler, or (with a subcommand) edit its schedule.

    Run several for high availability: they share the schedule store, one leads and sends
    each due task once, and another takes over within the lease TTL if it dies.
    """
    ctx.obj = _BeatFlags(schedule, scheduler)
    if ctx.invoked_subcommand is not None:
        return
    # lazy: the CLI loads only what the command it runs needs
    from celeriac.log import LogFormats, setup_logging

    app = _app(ctx)
    if logfile:
        logfile = os.path.abspath(logfile)
    if pidfile:
        pidfile = os.path.abspath(pidfile)
    if detach:
        if pidfile and Pidfile(pidfile).is_alive():
            raise click.ClickException(f"Pidfile {pidfile} names a running process")
        daemonize()
    setup_logging(loglevel, logfile, formats=LogFormats.from_conf(app.conf))
    if pidfile:
        Pidfile(pidfile).acquire()  # released at exit
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    try:
        options = BeatOptions.from_settings(
            app.conf,
            schedule=schedule,
            scheduler=scheduler,
            max_interval=max_interval,
            lease_ttl=lease_ttl,
        )
        service = Beat(app, options=options)
    except CeleryError as exc:
        raise click.ClickException(str(exc)) from exc
    if not detach:
        click.echo(_banner(service), err=True)
    service.run(stop)


def _banner(service: Beat) -> str:
    # lazy: the CLI loads only what the command it runs needs
    from celeriac.worker.banner import describe_url

    scheduler = service.scheduler
    configured = len(scheduler.config_entries)
    return "\n".join(
        [
            f"celeriac beat v{__version__} is starting.",
            f"    . broker -> {describe_url(service.app.broker_url)}",
            f"    . schedule -> {service.location or 'memory (this process only)'}",
            f"    . entries -> {configured} configured (+ any added at run time)",
            f"    . lease -> {scheduler.holder}, ttl {service.lease.ttl:g} s",
            f"    . maxinterval -> {scheduler.max_interval:g} s",
        ]
    )


def _when(value: dt.datetime | None) -> str:
    return value.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC") if value else "-"


@beat.command("list")
@schedule_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON, one object per entry.")
@click.pass_context
def list_entries(ctx: click.Context, schedule: str | None, as_json: bool) -> None:
    """Show configured and added entries with their state."""
    with _editing(ctx, schedule) as (app, store):
        views = describe_entries(app, store)
    if as_json:
        for view in views:
            click.echo(json.dumps(dataclasses.asdict(view), default=str))
        return
    if not views:
        click.echo("No periodic tasks: add some to beat_schedule, or with `celeriac beat add`.")
        return
    for view in views:
        state = "enabled" if view.enabled else "DISABLED"
        click.echo(f"{view.name}  [{view.source}, {state}]  {view.task}  {view.schedule}")
        click.echo(
            f"    runs: {view.total_run_count}  last: {_when(view.last_run_at)}  "
            f"next: {_when(view.next_run_at) if view.enabled else '-'}"
        )


def _json_arg(option: str, value: str | None, kind: type) -> Any:
    if value is None:
        return kind()
    try:
        parsed = json.loads(value)
    except json.JSONDecodeError as exc:
        raise click.BadParameter(f"not valid JSON: {exc}", param_hint=option) from exc
    if not isinstance(parsed, kind):
        raise click.BadParameter(f"must be a JSON {kind.__name__}", param_hint=option)
    return parsed


def _schedule_data(
    every: str | None, cron: str | None, solar: tuple[str, float, float] | None, relative: bool
) -> dict[str, Any]:
    """The stored form of the one schedule given on the command line."""
    if sum(given is not None for given in (every, cron, solar)) != 1:
        raise click.UsageError("give exactly one of --every, --cron and --solar")
    try:
        if every is not None:
            return {"type": "interval", "every": _seconds(every), "relative": relative}
        if cron is not None:
            return crontab.from_string(cron).to_dict()
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--every/--cron") from exc
    assert solar is not None
    return {"type": "solar", "event": solar[0], "lat": solar[1], "lon": solar[2]}


def _seconds(text: str) -> float:
    """``'30'``, ``'30s'``, ``'5m'``, ``'2h'``, ``'1d'`` in seconds."""
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    number, unit = (text[:-1], units[text[-1]]) if text[-1:] in units else (text, 1)
    try:
        seconds = float(number) * unit
    except ValueError:
        raise ValueError(
            f"{text!r} is not a duration: write seconds, or e.g. 30s, 5m, 2h"
        ) from None
    return seconds


@beat.command()
@click.argument("name")
@click.option("-t", "--task", required=True, help="The task's name, e.g. proj.tasks.add.")
@click.option("--every", metavar="DURATION", help="Run every DURATION: 30, 30s, 5m, 2h, 1d.")
@click.option("--cron", metavar="EXPR", help="Run on a cron expression: '*/5 * * * *'.")
@click.option(
    "--solar",
    type=(str, float, float),
    default=None,
    metavar="EVENT LAT LON",
    help="Run at a sun event, e.g. --solar sunset 48.85 2.35.",
)
@click.option("--relative", is_flag=True, help="With --every: round runs to the interval's unit.")
@click.option("-a", "--args", help="Positional arguments as a JSON list.")
@click.option("-k", "--kwargs", help="Keyword arguments as a JSON object.")
@click.option("--queue", help="Queue to send to.")
@click.option("--priority", type=click.IntRange(0, 9), help="Message priority.")
@click.option("--expires", type=float, help="Seconds after sending when a run is stale.")
@click.option("--options", help="More apply_async options as a JSON object.")
@click.option(
    "--missed",
    type=click.Choice(["run_once", "skip"]),
    default="run_once",
    show_default=True,
    help="A run missed while no beat ran: send it once, or skip it.",
)
@schedule_option
@click.pass_context
def add(
    ctx: click.Context,
    name: str,
    task: str,
    every: str | None,
    cron: str | None,
    solar: tuple[str, float, float] | None,
    relative: bool,
    args: str | None,
    kwargs: str | None,
    queue: str | None,
    priority: int | None,
    expires: float | None,
    options: str | None,
    missed: str,
    schedule: str | None,
) -> None:
    """Add (or replace) entry NAME in the schedule store; running beats pick it up."""
    sending = _json_arg("--options", options, dict)
    sending.update(
        {
            k: v
            for k, v in (("queue", queue), ("priority", priority), ("expires", expires))
            if v is not None
        }
    )
    definition = {
        "task": task,
        "schedule": _schedule_data(every, cron, solar, relative),
        "args": _json_arg("--args", args, list),
        "kwargs": _json_arg("--kwargs", kwargs, dict),
        "options": sending,
        "missed": missed,
    }
    with _editing(ctx, schedule) as (app, store):
        if name in (app.conf.beat_schedule or {}):
            raise click.ClickException(
                f"{name!r} is defined in beat_schedule; choose another name for an added entry"
            )
        entry = entry_from_definition(name, definition, app)
        replaced = name in store.entries()
        store.add(name, entry.definition(), fingerprint=entry.fingerprint, now=app.clock.time())
    click.echo(f"{'Replaced' if replaced else 'Added'} {name}: {entry.task} {entry.schedule!r}")


def _known(app: Any, store: ScheduleStore, name: str) -> tuple[bool, bool]:
    """(configured, stored with a definition) for entry ``name``; an error if neither."""
    configured = name in (app.conf.beat_schedule or {})
    state = store.entries().get(name)
    added = state is not None and state.definition is not None
    if not configured and not added:
        raise click.ClickException(f"no periodic task named {name!r}; see `celeriac beat list`")
    return configured, added


@beat.command()
@click.argument("name")
@schedule_option
@click.pass_context
def remove(ctx: click.Context, name: str, schedule: str | None) -> None:
    """Remove entry NAME added with `beat add` (configured ones: use `disable`)."""
    with _editing(ctx, schedule) as (app, store):
        configured, _ = _known(app, store, name)
        if configured:
            raise click.ClickException(
                f"{name!r} is defined in beat_schedule; remove it there, or `beat disable` it"
            )
        store.remove(name)
    click.echo(f"Removed {name}.")


def _set_enabled(ctx: click.Context, name: str, schedule: str | None, enabled: bool) -> None:
    with _editing(ctx, schedule) as (app, store):
        _known(app, store, name)
        store.set_enabled(name, enabled, now=app.clock.time())
    click.echo(f"{'Enabled' if enabled else 'Disabled'} {name}.")


@beat.command()
@click.argument("name")
@schedule_option
@click.pass_context
def enable(ctx: click.Context, name: str, schedule: str | None) -> None:
    """Resume entry NAME (its next run is one period from now)."""
    _set_enabled(ctx, name, schedule, True)


@beat.command()
@click.argument("name")
@schedule_option
@click.pass_context
def disable(ctx: click.Context, name: str, schedule: str | None) -> None:
    """Pause entry NAME until `beat enable`."""
    _set_enabled(ctx, name, schedule, False)


@beat.command("run-now")
@click.argument("name")
@schedule_option
@click.pass_context
def run_now(ctx: click.Context, name: str, schedule: str | None) -> None:
    """Have the leading beat send NAME once now, besides its schedule."""
    with _editing(ctx, schedule) as (app, store):
        _known(app, store, name)
        state = store.entries().get(name)
        if state is not None and not state.enabled:
            raise click.ClickException(f"{name!r} is disabled; `beat enable` it first")
        store.request_run(name)
    schedule, scheduler = _where(ctx, schedule)
    location = store_location(app, schedule, scheduler=scheduler) or "memory"
    click.echo(f"Asked the leading beat on {location} to send {name} now.")
