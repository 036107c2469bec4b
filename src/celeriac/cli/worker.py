"""``celeriac worker``: Celery's worker command, its flags built into ``WorkerOptions`` here,
at the edge (the command never writes into ``app.conf``), then the worker run until a signal."""

from __future__ import annotations

import logging
import os
import signal
from typing import TYPE_CHECKING

import click

from celeriac.app.base import Celery
from celeriac.cli._context import Context, pass_ctx, split_names
from celeriac.exceptions import CeleryError

if TYPE_CHECKING:
    from celeriac.beat.service import EmbeddedBeat
    from celeriac.worker.lifecycle import Worker

__all__ = ["worker"]


def _parse_autoscale(value: str | None) -> tuple[int, int] | None:
    if not value:
        return None
    try:
        numbers = [int(part) for part in value.split(",")]
    except ValueError:
        raise click.BadParameter("use MAX,MIN, e.g. 10,3", param_hint="--autoscale") from None
    high, low = (numbers[0], 0) if len(numbers) == 1 else (numbers[0], numbers[1])
    if high < 1 or low < 0 or low > high:
        raise click.BadParameter("need MAX >= MIN >= 0 and MAX >= 1", param_hint="--autoscale")
    return high, low


@click.command()
@click.option("-l", "--loglevel", default="WARNING", show_default=True, help="Logging level.")
@click.option("-c", "--concurrency", type=int, help="Pool slots (default: CPU count).")
@click.option(
    "-P",
    "--pool",
    type=click.Choice(["prefork", "threads", "solo", "asyncio", "gevent"]),
    help="prefork (processes), threads, solo (inline), asyncio (async def tasks on an "
    "event loop, sync tasks on threads beside it; default concurrency 100), or gevent "
    '(greenlets; pip install "celeriac[gevent]"; give it on the command line, as '
    "worker_pool='gevent' in the settings comes too late to monkey-patch).",
)
@click.option(
    "-Q",
    "--queues",
    help="Comma-separated queues to consume (default: every queue in task_queues, else "
    "task_default_queue). A queue task_queues does not define is created "
    "(task_create_missing_queues).",
)
@click.option(
    "-X", "--exclude-queues", help="Comma-separated queues not to consume (of those above)."
)
@click.option("-n", "--hostname", help="Node name; %h, %n, %d expand to host, name, domain.")
@click.option("--prefetch-multiplier", type=int, help="Messages held per slot (0 = no limit).")
@click.option("--max-tasks-per-child", type=int, help="Recycle a prefork child after N tasks.")
@click.option(
    "--max-memory-per-child", type=int, help="Recycle a prefork child past this RSS, in KiB."
)
@click.option(
    "--autoscale",
    metavar="MAX,MIN",
    help="Prefork: grow to MAX children under load, shrink to MIN when idle.",
)
@click.option("-f", "--logfile", type=click.Path(dir_okay=False), help="Log to this file.")
@click.option(
    "-O",
    "optimization",
    type=click.Choice(["fair", "default"]),
    help="fair (the default): take messages only for idle pool slots, so a long task never "
    "holds short ones hostage; default: prefetch up to concurrency x multiplier.",
)
@click.option(
    "--disable-prefetch", is_flag=True, help="Take messages only for idle slots (as -O fair)."
)
@click.option("--purge", is_flag=True, help="Delete waiting messages of the queues first.")
@click.option("-B", "--beat", "embed_beat", is_flag=True, help="Also run beat (for development).")
@click.option("-s", "--schedule", help="With -B: where beat keeps its schedule state.")
@click.option("-D", "--detach", is_flag=True, help="Run in the background (needs --logfile).")
@click.option("--pidfile", help="Write the pid here; refuse to start if it names a live worker.")
@click.option(
    "-S",
    "--statedb",
    help="Keep revoked ids and the logical clock in this file across restarts "
    "(worker_state_db; %n, %h expand).",
)
@click.option("--time-limit", type=float, help="Hard time limit per task, in seconds.")
@click.option("--soft-time-limit", type=float, help="Soft time limit per task, in seconds.")
@click.option("-E", "--task-events", is_flag=True, help="Send task events (for monitors).")
@click.option("--without-heartbeat", is_flag=True, help="Send no worker events (heartbeats).")
@click.option("--heartbeat-interval", type=float, help="Seconds between heartbeats (2).")
@click.option("--without-gossip", is_flag=True, help="Accepted (Celeriac has no gossip).")
@click.option(
    "--without-mingle",
    is_flag=True,
    help="Skip the 1 s startup sync of revoked ids and clock with running workers.",
)
@click.option("-I", "--include", help="Comma-separated modules to import (added to include).")
@click.option(
    "--scheduler",
    help="With -B: the beat scheduler class (beat_scheduler), e.g. a database scheduler.",
)
@click.option("--uid", help="Drop privileges to this user (name or id) after starting.")
@click.option("--gid", help="Drop privileges to this group (name or id) after starting.")
@click.option("--umask", help="Create files with this umask (octal, e.g. 022).")
@click.option(
    "--pool-start-method",
    type=click.Choice(["fork", "spawn"]),
    help="How prefork children start: fork (the default; spawn is refused: the pool forks).",
)
@click.option(
    "--log-format",
    type=click.Choice(["text", "json"]),
    default="text",
    show_default=True,
    help="text: worker_log_format / worker_task_log_format; json: one JSON object a line.",
)
@click.option(
    "--metrics-port",
    type=click.IntRange(0, 65535),
    help="Serve this worker's Prometheus metrics at http://HOST:PORT/metrics.",
)
@click.option(
    "--metrics-host",
    default="127.0.0.1",
    show_default=True,
    help="With --metrics-port: the address to listen on (0.0.0.0 for every interface).",
)
@pass_ctx
def worker(
    ctx: Context,
    loglevel: str,
    concurrency: int | None,
    pool: str | None,
    queues: str | None,
    exclude_queues: str | None,
    hostname: str | None,
    prefetch_multiplier: int | None,
    max_tasks_per_child: int | None,
    max_memory_per_child: int | None,
    autoscale: str | None,
    logfile: str | None,
    optimization: str | None,
    disable_prefetch: bool,
    purge: bool,
    embed_beat: bool,
    schedule: str | None,
    detach: bool,
    pidfile: str | None,
    statedb: str | None,
    time_limit: float | None,
    soft_time_limit: float | None,
    task_events: bool,
    without_heartbeat: bool,
    heartbeat_interval: float | None,
    without_gossip: bool,
    without_mingle: bool,
    include: str | None,
    scheduler: str | None,
    uid: str | None,
    gid: str | None,
    umask: str | None,
    pool_start_method: str | None,
    log_format: str,
    metrics_port: int | None,
    metrics_host: str,
) -> None:
    """Start a worker: consume the queues and run tasks.

    SIGTERM or Ctrl-C stops warmly (running tasks finish, prefetched messages go back to the
    broker); a second one stops at once.
    """
    # lazy: the CLI loads only what the command it runs needs
    from celeriac.cli import _worker_options as flags

    # lazy: the CLI loads only what the command it runs needs
    from celeriac.cli.daemon import expand_node_pattern

    # lazy: the CLI loads only what the command it runs needs
    from celeriac.worker.lifecycle import Worker, WorkerOptions, expand_hostname

    mask = flags.parse_umask(umask)
    node_name = expand_hostname(hostname)
    if logfile:
        logfile = os.path.abspath(expand_node_pattern(logfile, node_name))
    if pidfile:
        pidfile = os.path.abspath(expand_node_pattern(pidfile, node_name))
    if statedb:  # before --detach changes directory
        statedb = os.path.abspath(expand_node_pattern(statedb, node_name))
    _become_daemon(detach, logfile, pidfile, mask)
    app = ctx.app
    flags.apply_pool_start_method(app, pool_start_method, pool)
    flags.drop_privileges(uid, gid)  # as Celery: before the log, state files and pool
    _worker_logging(ctx, app, loglevel, logfile, log_format)
    try:
        options = WorkerOptions.from_settings(
            app.conf,
            hostname=hostname,
            concurrency=concurrency,
            pool=pool,
            queues=split_names(queues),
            exclude_queues=split_names(exclude_queues),
            prefetch_multiplier=prefetch_multiplier,
            max_tasks_per_child=max_tasks_per_child,
            fair=disable_prefetch or optimization != "default",
            max_memory_per_child=max_memory_per_child,
            autoscale=_parse_autoscale(autoscale),
            autoscale_keepalive=flags.autoscale_keepalive(),
            quiet=ctx.quiet,
            task_events=True if task_events else None,
            heartbeat=not without_heartbeat,
            heartbeat_interval=heartbeat_interval,
            mingle=not without_mingle,
            state_db=statedb,
            metrics_port=metrics_port,
            metrics_host=metrics_host,
            time_limit=time_limit,
            soft_time_limit=soft_time_limit,
            include=split_names(include),
        )
        beat = _embedded_beat(app, schedule, scheduler) if embed_beat else None
        node = Worker(app, options=options)
    except CeleryError as exc:
        raise click.ClickException(str(exc)) from exc
    _run_worker(app, node, purge=purge, beat=beat)


def _become_daemon(
    detach: bool, logfile: str | None, pidfile: str | None, mask: int | None
) -> None:
    """``--detach``, ``--umask``, ``--pidfile``, in Celery's order."""
    # lazy: the CLI loads only what the command it runs needs
    from celeriac.cli.daemon import Pidfile

    # lazy: the CLI loads only what the command it runs needs
    from celeriac.cli.daemon import detach as daemonize

    if detach:
        if not logfile:
            raise click.UsageError("--detach needs --logfile: a detached worker has no terminal")
        if pidfile and Pidfile(pidfile).is_alive():
            raise click.ClickException(f"Pidfile {pidfile} names a running process")
        daemonize()
    if mask is not None:
        os.umask(mask)
    if pidfile:
        Pidfile(pidfile).acquire()


def _worker_logging(
    ctx: Context, app: Celery, loglevel: str, logfile: str | None, log_format: str
) -> None:
    # lazy: the CLI loads only what the command it runs needs
    from celeriac.log import LogFormats, setup_logging

    color = app.conf.worker_log_color
    try:
        setup_logging(
            loglevel,
            logfile,
            colorize=False if ctx.no_color else color,
            hijack_root_logger=bool(app.conf.worker_hijack_root_logger),
            redirect_stdouts=bool(app.conf.worker_redirect_stdouts),
            redirect_level=str(app.conf.worker_redirect_stdouts_level),
            formats=LogFormats.from_conf(app.conf, json=log_format == "json"),
        )
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--loglevel") from exc


def _embedded_beat(app: Celery, schedule: str | None, scheduler: str | None) -> EmbeddedBeat:
    """``-B``: beat in a thread of the worker, with ``-s`` and ``--scheduler``."""
    # lazy: beat only when --beat asks for it
    from celeriac.beat.options import BeatOptions

    # lazy: beat only when --beat asks for it
    from celeriac.beat.service import EmbeddedBeat

    options = BeatOptions.from_settings(
        app.conf, schedule=schedule, scheduler=scheduler, import_modules=False
    )
    return EmbeddedBeat(app, options=options)


def _run_worker(app: Celery, node: Worker, *, purge: bool, beat: EmbeddedBeat | None) -> None:
    """Start ``node`` (and ``beat``), run until a signal or a remote shutdown, stop warmly."""
    signalled: list[int] = []

    def on_signal(signum: int, _frame: object) -> None:
        signalled.append(signum)
        if signum == signal.SIGQUIT or len(signalled) > 1:
            logging.getLogger("celeriac.worker").warning("Cold shutdown (%s)", signum)
            node.save_state()
            os._exit(1)
        logging.getLogger("celeriac.worker").warning("Warm shutdown (%s)", signum)

    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT):
        signal.signal(signum, on_signal)
    if purge:
        names = [q.name for q in node.queues]
        count = sum(app.transport.purge(name) for name in names)
        click.echo(f"Purged {count} message(s) from {len(names)} queue(s).")
    try:
        node.start()
    except CeleryError as exc:
        raise click.ClickException(str(exc)) from exc
    if beat is not None:  # after start(), so the prefork pool has forked before beat's thread
        beat.start()
    while not signalled and not node.stopping:
        node.wait(0.2)
    if beat is not None:
        beat.stop()
    node.stop(warm=True)
    if node.crashed:  # so a supervisor (systemd Restart=on-failure) starts it again
        raise SystemExit(1)
