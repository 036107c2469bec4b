"""``celeriac list bindings``: the queues the app defines, with their exchange and key.

As Celery's command, the app's task queues are declared first, then each binding is printed
in Celery's table (``Queue``, ``Exchange``, ``Routing Key``, columns 28 wide). Celery asks the
broker (RabbitMQ's management plugin; kombu's in-process table on Redis); Celeriac prints the
bindings it declared, which on Redis and RabbitMQ are those the broker now holds for them. A
queue on the default exchange is shown bound to its own name, as kombu declares it.
"""

from __future__ import annotations

from typing import Any

import click

from celeriac.exceptions import CeleryError

__all__ = ["list_"]


def _row(queue: str, exchange: str, key: str) -> str:
    return f"{queue:<28} {exchange:<28} {key}"


@click.group(name="list")
def list_() -> None:
    """Show what the broker holds for the app."""


@list_.command()
@click.pass_obj
def bindings(ctx: Any) -> None:
    """The bindings of the app's task queues (declared first, as Celery's command does)."""
    app = ctx.app
    rows = [_row("Queue", "Exchange", "Routing Key"), _row("-" * 16, "-" * 16, "-" * 16)]
    try:
        for queue in app.router.defined:
            app.transport.declare(queue)
            rows.append(_row(queue.name, queue.bound_exchange.name, queue.binding_key))
    except CeleryError as exc:
        raise click.ClickException(str(exc)) from exc
    for row in rows:
        click.echo(row)
