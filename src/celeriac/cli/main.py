"""``celeriac``: Celery's command line. Global options go before the subcommand.

celeriac -A proj worker -l info -c 4 -P threads -Q images,video
celeriac -A proj call proj.tasks.add --args '[2, 2]'
celeriac -A proj result <task-id> --wait
"""

from __future__ import annotations

import datetime as dt
import json
import os
import sys
from typing import TYPE_CHECKING, Any

import click

from celeriac._gevent_patch import patch_if_requested
from celeriac.cli._context import Context, pass_ctx, split_names
from celeriac.exceptions import CeleryError
from celeriac.worker.banner import describe_url

if TYPE_CHECKING:
    pass

__all__ = ["main"]


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
    "-Q",
    "--queues",
    help="Comma-separated queues to purge (default: every queue the "
    "settings define: task_queues, else task_default_queue).",
)
@click.option("-X", "--exclude-queues", help="Comma-separated queues not to purge.")
@pass_ctx
def purge(ctx: Context, force: bool, queues: str | None, exclude_queues: str | None) -> None:
    """Delete every waiting message from the task queues. Cannot be undone."""
    app = ctx.app
    exclude = set(split_names(exclude_queues) or ())
    if queues:
        chosen = [name for name in split_names(queues) or () if name not in exclude]
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
    click.echo(ctx.app.bugreport())


from celeriac.cli.multi import multi  # noqa: E402 - registered after the group exists
from celeriac.cli.worker import worker  # noqa: E402 - registered after the group exists

cli.add_command(worker)

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
