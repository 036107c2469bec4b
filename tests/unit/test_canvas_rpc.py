"""Chords on the ``rpc://`` result backend are refused when applied, before anything is sent:
results there are messages to one client, so a chord's header could never be joined."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from celeriac import Celery, chain, chord, group
from celeriac.exceptions import ImproperlyConfigured
from celeriac.transports.memory import MemoryTransport

NAME = f"test-canvas-rpc-{uuid.uuid4().hex}"

# The broker is in memory, so what was sent can be counted; the rpc backend is never built
# (it would need RabbitMQ): the refusal is decided from its URL.
app = Celery("canvasrpc", broker=f"memory://{NAME}", backend="rpc://", set_as_current=False)


@app.task
def add(x: int, y: int) -> int:
    return x + y


@app.task
def tsum(numbers: list[int]) -> int:
    return sum(numbers)


@pytest.fixture(autouse=True)
def _cleanup() -> Iterator[None]:
    yield
    assert app.transport.queue_length("celery") == 0, "a refused workflow sent messages"
    app.close()
    MemoryTransport.reset(NAME)


def refused(workflow: object) -> str:
    with pytest.raises(ImproperlyConfigured) as raised:
        workflow.delay()  # type: ignore[attr-defined]
    message = str(raised.value)
    assert message.startswith("A chord cannot run with the rpc:// result backend"), message
    return message


def test_a_chord_is_refused_naming_the_backend_and_the_remedy() -> None:
    message = refused(chord([add.s(1, 1), add.s(2, 2)], tsum.s()))
    assert "Set result_backend to a backend that stores results" in message
    with pytest.raises(ImproperlyConfigured, match="cannot run with the rpc://"):
        chord([add.s(1, 1)])(tsum.s())


def test_chords_made_by_composition_are_refused_too() -> None:
    refused(group(add.s(1, 1), add.s(2, 2)) | tsum.s())
    # The chord is the chain's second step, which a worker would send: refused here, now.
    refused(add.s(1, 1) | group(add.s(1), add.s(2)) | tsum.s())
    refused(add.s(1, 1) | chord([add.s(1), add.s(2)], tsum.s()))
    refused(chain(add.s(1, 1), group(add.s(1), add.s(2)), tsum.s(), add.s(1)))
