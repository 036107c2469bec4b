"""``celeriac``: Celery's command line. Global options go before the subcommand.

celeriac -A proj worker -l info -c 4 -P threads -Q images,video
celeriac -A proj call proj.tasks.add --args '[2, 2]'
celeriac -A proj result <task-id> --wait
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import platform
import signal
import sys
from typing import TYPE_CHECKING, Any

import click

from celeriac._gevent_patch import patch_if_requested
from celeriac._version import __version__
from celeriac.app.base import Celery
from celeriac.cli.loading import find_app
from celeriac.exceptions import CeleryError
from celeriac.worker.banner import describe_url

if TYPE_CHECKING:
    from celeriac.beat.service import EmbeddedBeat
    from celeriac.worker.lifecycle import Worker

__all__ = ["main"]


class Context:
    """The global options, and the app they name (loaded when a command first asks)."""

    def __init__(
        self,
        app_spec: str | None,
        broker: str | None,
        backend: str | None,
        *,
        config: str | None = None,
        no_color: bool = False,
        quiet: bool = False,
    ) -> None:
        self.app_spec = app_spec
        self.broker = broker
        self.backend = backend
        self.config = config
        self.no_color = no_color
        self.quiet = quiet
        self._app: Celery | None = None

    @property
    def app(self) -> Celery:
        if self._app is None:
            app = find_app(self.app_spec) if self.app_spec else Celery("default")
            if self.config:
                try:
                    app.config_from_object(self.config)
                except CeleryError as exc:
                    raise click.BadParameter(str(exc), param_hint="--config") from exc
            if self.broker:
                app.conf.broker_url = self.broker
            if self.backend:
                app.conf.result_backend = self.backend
            self._app = app
        return self._app

    def echo(self, message: str) -> None:
        """Print an informational line, unless ``-q/--quiet``."""
        if not self.quiet:
            click.echo(message)


pass_ctx = click.make_pass_decorator(Context)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-A", "--app", "app_spec", metavar="APP", help="The app: module or module:attr.")
@click.option("-b", "--broker", help="Broker URL (overrides broker_url).")
@click.option("--result-backend", help="Result backend URL (overrides result_backend).")
@click.option(
    "--config",
    metavar="MODULE",
    help="Load settings from this module (as app.config_from_object), after the app's own.",
)
@click.option(
    "--workdir",
    type=click.Path(exists=True, file_okay=False),
    help="Change to this directory first (before the app is imported).",
)
@click.option("-C", "--no-color", is_flag=True, help="No colours in the log and output.")
@click.option("-q", "--quiet", is_flag=True, help="No banner or informational output.")
@click.option(
    "--skip-checks",
    is_flag=True,
    help="Skip Django's system checks at startup (sets CELERY_SKIP_CHECKS, as Celery).",
)
@click.version_option(package_name="celeriac", message="%(version)s")
@click.pass_context
def cli(
    ctx: click.Context,
    app_spec: str | None,
    broker: str | None,
    result_backend: str | None,
    config: str | None,
    workdir: str | None,
    no_color: bool,
    quiet: bool,
    skip_checks: bool,
) -> None:
    """Celeriac: a distributed task queue with Celery's API, protocol and commands.

    With no broker configured, the app uses the embedded SQLite file celeriac.sqlite in the
    current directory for both messages and results.
    """
    if workdir:
        os.chdir(workdir)
    if skip_checks:
        os.environ["CELERY_SKIP_CHECKS"] = "true"
    ctx.obj = Context(
        app_spec, broker, result_backend, config=config, no_color=no_color, quiet=quiet
    )


def _parse_json(option: str, value: str | None, kind: type) -> Any:
    if value is None:
        return kind()
    try:
        parsed = json.loads(value)
    except json.JSONDecodeError as exc:
        raise click.BadParameter(f"not valid JSON: {exc}", param_hint=option) from exc
    if not isinstance(parsed, kind):
        raise click.BadParameter(f"must be a JSON {kind.__name__}", param_hint=option)
    return parsed


def _names(value: str | None) -> list[str] | None:
    """A comma-separated list of names (None when empty)."""
    names = [name.strip() for name in (value or "").split(",") if name.strip()]
    return names or None


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


@cli.command()
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
            queues=_names(queues),
            exclude_queues=_names(exclude_queues),
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
            include=_names(include),
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
            loglevel, logfile, colorize=False if ctx.no_color else color,
            hijack_root_logger=bool(app.conf.worker_hijack_root_logger),
            redirect_stdouts=bool(app.conf.worker_redirect_stdouts),
            redirect_level=str(app.conf.worker_redirect_stdouts_level),
            formats=LogFormats.from_conf(app.conf, json=log_format == "json"),
        )  # fmt: skip
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


@cli.command()
@click.argument("name")
@click.option("-a", "--args", help="Positional arguments as a JSON list, e.g. '[2, 2]'.")
@click.option("-k", "--kwargs", help="Keyword arguments as a JSON object, e.g. '{\"x\": 1}'.")
@click.option("--countdown", type=float, help="Run no sooner than this many seconds from now.")
@click.option("--eta", help="Run no sooner than this ISO-8601 time.")
@click.option("--expires", help="Seconds, or an ISO-8601 time, after which not to run.")
@click.option("--queue", help="Queue to send to.")
@click.option(
    "--priority",
    type=click.IntRange(0, 9),
    help="Message priority 0-9: 9 first on SQLite and RabbitMQ, 0 first on Redis (as kombu).",
)
@click.option("--wait", is_flag=True, help="Then wait for the result and print it (as `result`).")
@click.option("--timeout", type=float, help="With --wait: give up after this many seconds.")
@pass_ctx
def call(
    ctx: Context,
    name: str,
    args: str | None,
    kwargs: str | None,
    countdown: float | None,
    eta: str | None,
    expires: str | None,
    queue: str | None,
    priority: int | None,
    wait: bool,
    timeout: float | None,
) -> None:
    """Send task NAME by name and print its id (with --wait, then its result)."""
    options: dict[str, Any] = {"countdown": countdown, "queue": queue, "priority": priority}
    if eta:
        try:
            options["eta"] = dt.datetime.fromisoformat(eta)
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--eta") from exc
    if expires:
        try:
            options["expires"] = float(expires)
        except ValueError:
            options["expires"] = dt.datetime.fromisoformat(expires)
    sent_args = _parse_json("--args", args, list)
    sent_kwargs = _parse_json("--kwargs", kwargs, dict)
    try:
        result = ctx.app.send_task(
            name, sent_args, sent_kwargs, **{k: v for k, v in options.items() if v is not None}
        )
    except CeleryError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(result.id)
    if wait:
        _print_result(result, wait, timeout, show_traceback=False)


@cli.command()
@click.argument("task_id")
@click.option("--wait", is_flag=True, help="Wait until the task is ready.")
@click.option("--timeout", type=float, help="With --wait: give up after this many seconds.")
@click.option("--traceback", "show_traceback", is_flag=True, help="Show a failure's traceback.")
@pass_ctx
def result(
    ctx: Context, task_id: str, wait: bool, timeout: float | None, show_traceback: bool
) -> None:
    """Print the state and result of TASK_ID."""
    _print_result(ctx.app.AsyncResult(task_id), wait, timeout, show_traceback)


def _print_result(res: Any, wait: bool, timeout: float | None, show_traceback: bool) -> None:
    """``STATE: value`` of a result, waited for first (with progress on a terminal)."""
    # lazy: the CLI loads only what the command it runs needs
    from celeriac.cli.progress import wait_for_result

    try:
        if wait:
            wait_for_result(res, timeout)
        state = res.state
        value = res.result
    except CeleryError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"{state}: {value!r}")
    if show_traceback and res.traceback:
        click.echo(res.traceback)


@cli.command()
@click.option("-f", "--force", is_flag=True, help="Do not ask for confirmation.")
@click.option(
    "-Q", "--queues", help="Comma-separated queues to purge (default: every queue the "
    "settings define: task_queues, else task_default_queue).",
)  # fmt: skip
@click.option("-X", "--exclude-queues", help="Comma-separated queues not to purge.")
@pass_ctx
def purge(ctx: Context, force: bool, queues: str | None, exclude_queues: str | None) -> None:
    """Delete every waiting message from the task queues. Cannot be undone."""
    app = ctx.app
    exclude = set(_names(exclude_queues) or ())
    if queues:
        chosen = [name for name in _names(queues) or () if name not in exclude]
    else:
        chosen = [q.name for q in app.router.defined if q.name not in exclude]
    names = list(dict.fromkeys(chosen))
    if not names:
        ctx.echo("No queues to purge (all of them excluded).")
        return
    if not force:
        click.confirm(
            f"Delete all messages waiting in {len(names)} queue(s) ({', '.join(names)}) of "
            f"{describe_url(app.broker_url)}? This cannot be undone",
            abort=True,
        )
    # lazy: the CLI loads only what the command it runs needs
    from celeriac.cli.progress import Activity

    try:
        total = 0
        with Activity("Purging") as activity:
            for done, name in enumerate(names):
                activity.update(f"Purging {name}", (done, len(names)))
                total += app.transport.purge(name)
    except CeleryError as exc:
        raise click.ClickException(str(exc)) from exc
    ctx.echo(f"Purged {total} message(s) from {len(names)} queue(s).")


@cli.command()
@pass_ctx
def report(ctx: Context) -> None:
    """Print versions, platform and settings, for bug reports (passwords masked)."""
    app = ctx.app
    click.echo(f"celeriac:{__version__} python:{platform.python_version()}")
    click.echo(f"platform:{platform.platform()} pid:{os.getpid()}")
    click.echo(f"broker:{describe_url(app.broker_url)}")
    click.echo(f"results:{describe_url(app.result_backend_url)}")
    click.echo("")
    click.echo(app.conf.humanize())


from celeriac.cli.multi import multi  # noqa: E402 - registered after the group exists

cli.add_command(multi)

from celeriac.cli.beat import beat  # noqa: E402 - registered after the group exists

cli.add_command(beat)

from celeriac.cli.control import control, inspect, status  # noqa: E402 - after the group exists
from celeriac.cli.events import events  # noqa: E402 - registered after the group exists

for _command in (control, inspect, status, events):
    cli.add_command(_command)

from celeriac.cli.dashboard import dashboard  # noqa: E402 - registered after the group exists
from celeriac.cli.dlq import dlq  # noqa: E402 - registered after the group exists

cli.add_command(dlq)

cli.add_command(dashboard)
cli.add_command(dashboard, name="flower")

from celeriac.cli.graph import graph  # noqa: E402 - registered after the group exists
from celeriac.cli.listing import list_  # noqa: E402 - registered after the group exists
from celeriac.cli.shell import shell  # noqa: E402 - registered after the group exists
from celeriac.cli.upgrade import upgrade  # noqa: E402 - registered after the group exists

for _command in (graph, list_, shell, upgrade):
    cli.add_command(_command)


def main(argv: list[str] | None = None) -> None:
    """Entry point of the console script and ``python -m celeriac``."""
    args = argv if argv is not None else sys.argv[1:]
    # The console script's first chance to patch for -P gevent (python -m celeriac did already):
    # after this module's imports, but before the app, its tasks, or any thread or socket.
    patch_if_requested(args)
    cli.main(args=args, prog_name="celeriac")
