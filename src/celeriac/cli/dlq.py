"""``celeriac dlq``: inspect the broker's dead-letter store and send letters back after a fix.

celeriac -A proj dlq list [-Q images] [--limit 50] [--json]
celeriac -A proj dlq show <id>
celeriac -A proj dlq requeue <id> [<id> ...] | --all [-Q images] [-f]
celeriac -A proj dlq purge [-Q images] [-f]

The store, its record format and its bounds are described in docs/dead-letters.md.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TypeVar

import click

from celeriac.exceptions import CeleryError
from celeriac.transports._dead_letters import record
from celeriac.transports.base import DeadLetter, Transport

__all__ = ["dlq"]

T = TypeVar("T")
_REASON_WIDTH = 60


def _transport(ctx: click.Context) -> Transport:
    root = ctx.find_root().obj
    if root is None or not hasattr(root, "app"):
        raise click.UsageError("run through the celeriac command: celeriac -A proj dlq list")
    transport: Transport = root.app.transport
    return transport


@contextmanager
def _broker_errors() -> Iterator[None]:
    try:
        yield
    except CeleryError as exc:
        raise click.ClickException(str(exc)) from exc


def _run(ctx: click.Context, action: Callable[[Transport], T]) -> T:
    with _broker_errors():
        return action(_transport(ctx))


def _when(timestamp: float) -> str:
    return dt.datetime.fromtimestamp(timestamp, tz=dt.UTC).isoformat(timespec="seconds")


def _short(text: str, width: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 3] + "..."


@click.group()
def dlq() -> None:
    """Inspect, requeue and purge dead letters: messages the broker or a worker set aside
    (undecodable, not allowed, unknown task, rejected, or delivered too many times), each
    with its reason. Bounded by dead_letter_max_entries and dead_letter_max_age."""


@dlq.command(name="list", short_help="List dead letters: id, queue, time, task, reason.")
@click.option("-Q", "--queue", help="Only the letters of this queue.")
@click.option(
    "--limit",
    type=click.IntRange(min=1),
    default=100,
    show_default=True,
    help="Show at most this many (the newest).",
)
@click.option("--json", "as_json", is_flag=True, help="One JSON record per line, full detail.")
@click.pass_context
def list_letters(ctx: click.Context, queue: str | None, limit: int, as_json: bool) -> None:
    """List dead letters, oldest first: id, queue, when, task, task id and reason."""
    letters = _run(ctx, lambda transport: transport.dead_letters(queue))
    shown = letters[-limit:]
    if as_json:
        for letter in shown:
            click.echo(json.dumps(record(letter)))
        return
    if not letters:
        click.echo("No dead letters" + (f" in queue {queue!r}." if queue else "."))
        return
    click.echo(f"{'ID':<16}  {'QUEUE':<12}  {'WHEN (UTC)':<25}  {'TASK':<24}  REASON")
    for letter in shown:
        task = record(letter)["task"] or ("(not a message)" if not letter.is_message else "-")
        click.echo(
            f"{letter.id:<16}  {_short(letter.queue, 12):<12}  "
            f"{_when(letter.dead_lettered_at):<25}  {_short(task, 24):<24}  "
            f"{_short(letter.reason, _REASON_WIDTH)}"
        )
    if len(letters) > len(shown):
        click.echo(f"({len(letters) - len(shown)} older letter(s) not shown; raise --limit)")


@dlq.command(short_help="Print one dead letter as JSON.")
@click.argument("letter_id", metavar="ID")
@click.pass_context
def show(ctx: click.Context, letter_id: str) -> None:
    """Print one dead letter as JSON: reason, queue, time and the whole original message
    (a body that is not UTF-8 text is base64, as body_encoding says)."""
    letter = _run(ctx, lambda transport: transport.get_dead_letter(letter_id))
    if letter is None:
        raise click.ClickException(f"No dead letter {letter_id!r} (see celeriac dlq list).")
    body = record(letter)
    body["dead_lettered_at_iso"] = _when(letter.dead_lettered_at)
    click.echo(json.dumps(body, indent=2))


def _requeue_one(transport: Transport, letter_id: str) -> DeadLetter | None:
    try:
        return transport.requeue_dead_letter(letter_id)
    except ValueError as exc:
        raise click.ClickException(f"{exc} (purge it, or inspect it with dlq show).") from exc


@dlq.command(short_help="Send dead letters back to their queues.")
@click.argument("letter_ids", metavar="[ID]...", nargs=-1)
@click.option("--all", "every", is_flag=True, help="Requeue every letter (of -Q, if given).")
@click.option("-Q", "--queue", help="With --all: only the letters of this queue.")
@click.option("-f", "--force", is_flag=True, help="With --all: do not ask for confirmation.")
@click.pass_context
def requeue(
    ctx: click.Context, letter_ids: tuple[str, ...], every: bool, queue: str | None, force: bool
) -> None:
    """Send dead letters' original messages back to their queues, to run again (after the
    fix). Each letter leaves the store as its message is sent, so it is sent once."""
    if every == bool(letter_ids):
        raise click.UsageError("give the ids of the letters to requeue, or --all (not both)")
    if every:
        found = _run(ctx, lambda transport: transport.dead_letters(queue))
        letter_ids = tuple(letter.id for letter in found if letter.is_message)
        if not force:
            click.confirm(f"Requeue {len(letter_ids)} dead letter(s)?", abort=True)
    missing = 0
    transport = _run(ctx, lambda opened: opened)  # (a bad broker URL is an error, not a trace)
    for letter_id in letter_ids:
        with _broker_errors():
            letter = _requeue_one(transport, letter_id)
        if letter is None:
            click.echo(f"No dead letter {letter_id!r} (already requeued or purged?).", err=True)
            missing += 1
            continue
        task = record(letter)["task"] or "message"
        click.echo(f"Requeued {letter_id} ({task}) to queue {letter.queue!r}.")
    if missing:
        raise click.exceptions.Exit(1)


@dlq.command(short_help="Delete dead letters for good.")
@click.option("-Q", "--queue", help="Only the letters of this queue.")
@click.option("-f", "--force", is_flag=True, help="Do not ask for confirmation.")
@click.pass_context
def purge(ctx: click.Context, queue: str | None, force: bool) -> None:
    """Delete dead letters for good (all, or those of one queue). Cannot be undone."""
    if not force:
        where = f"of queue {queue!r}" if queue else "of every queue"
        click.confirm(f"Delete the dead letters {where}? This cannot be undone", abort=True)
    count = _run(ctx, lambda transport: transport.purge_dead_letters(queue))
    click.echo(f"Purged {count} dead letter(s).")
