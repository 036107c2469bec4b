"""The async client: publish, wait for results, and ask workers, from an event loop.

How each broker and result store is driven (no thread per call where the driver allows):

    Redis broker           publish on an asyncio RESP connection (``_resp``); the
                           commands are the transport's own (``publish_commands``)
    Redis results          SUBSCRIBE + MGET on asyncio connections, as the sync wait
    SQLite, memory, SQL    polled with ``asyncio.sleep`` between reads; each read (a local,
    results                sub-millisecond query) runs in the app's bounded executor
    RabbitMQ, SQLite       publish in the app's bounded executor (py-amqp and sqlite3 have
    brokers                no asyncio driver; a publish is one short blocking call)
    rpc:// results         the same polling: the backend's own I/O thread consumes the
                           reply queue into memory, and each read settles it (one round trip)
    remote control         the blocking broadcast-and-collect in the bounded executor

The bounded executor is a thread pool of ``_EXECUTOR_THREADS`` per app: work beyond it
queues instead of starting threads.
"""

from __future__ import annotations

import asyncio
import functools
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, TypeVar

from celeriac import states
from celeriac._redis.client import RedisError
from celeriac.aio._resp import pool_for
from celeriac.backends.redis import RedisBackend
from celeriac.exceptions import TimeoutError as ResultTimeout

if TYPE_CHECKING:
    from celeriac._app_protocol import AppLike
    from celeriac.app.producer import Sending
    from celeriac.result import AsyncResult

__all__ = ["run_blocking", "send_task", "wait_ready", "wait_result"]

T = TypeVar("T")

_EXECUTOR_THREADS = 8
_executors: weakref.WeakKeyDictionary[AppLike, ThreadPoolExecutor] = weakref.WeakKeyDictionary()
_POLL_FIRST = 0.01  # first pause when polling a store that does not notify; doubles


def _executor(app: AppLike) -> ThreadPoolExecutor:
    pool = _executors.get(app)
    if pool is None:
        pool = ThreadPoolExecutor(_EXECUTOR_THREADS, thread_name_prefix="celeriac-aio")
        _executors[app] = pool
    return pool


async def run_blocking(app: AppLike, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Run a blocking call in the app's bounded executor and await its result."""
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(_executor(app), functools.partial(fn, *args, **kwargs))


# -- publishing ------------------------------------------------------------------------------


async def send_task(
    app: AppLike,
    name: str,
    args: Sequence[Any] | None = None,
    kwargs: dict[str, Any] | None = None,
    **options: Any,
) -> AsyncResult[Any]:
    """``app.send_task`` for an event loop: the same message, routing and signals."""
    producer = app.producer
    sending = producer.prepare(name, args, kwargs, **options)
    transport = app.transport
    if getattr(transport, "publish_commands", None) is not None:
        await _publish_redis(app, transport, sending)
    else:
        await run_blocking(app, producer._publish, sending.outgoing, sending.queue, sending.options)
    return producer.finish(sending)


async def _publish_redis(app: AppLike, transport: Any, sending: Sending) -> None:
    producer = app.producer
    if sending.queue.name not in producer._declared.get(transport, ()):
        await run_blocking(app, producer._declare, sending.queue)
    conf = app.conf
    policy = {
        **(conf.task_publish_retry_policy or {}),
        **(sending.options.get("retry_policy") or {}),
    }
    retry = sending.options.get("retry", conf.task_publish_retry)
    limit = int(policy.get("max_retries", 3) or 0) if retry else 0
    pause = float(policy.get("interval_start", 0))
    pool = await pool_for(transport.connector)
    items = [sending.outgoing]
    for attempt in range(limit + 1):
        try:
            async with pool.connection() as conn:
                exchanges = {item.exchange for item in items if item.exchange}
                routes = None
                if exchanges:
                    replies = await conn.execute(transport.route_commands(exchanges))
                    routes = transport.parse_routes(exchanges, replies)
                commands, _ = transport.publish_commands(items, routes)
                if commands:
                    await conn.execute(commands, transaction=len(commands) > 1)
            return
        except RedisError as exc:
            if attempt >= limit or not transport.connector.is_retryable(exc):
                raise transport.connector.describe(exc, "publish messages") from exc
            await asyncio.sleep(pause)
            pause = min(
                pause + float(policy.get("interval_step", 0.2)),
                float(policy.get("interval_max", 1)),
            )


# -- waiting ---------------------------------------------------------------------------------


async def wait_ready(
    app: AppLike, task_ids: Sequence[str], *, timeout: float | None, interval: float = 0.5
) -> AsyncIterator[tuple[str, dict[str, Any]]]:
    """``(task id, meta)`` of each task as it becomes ready, in the order they finish.

    Raises ``celeriac.exceptions.TimeoutError`` when ``timeout`` (counted from the first
    call, on the event loop's clock) passes before the next one is ready.
    """
    pending = list(dict.fromkeys(task_ids))
    results = app.results
    backend = results.backend
    loop = asyncio.get_running_loop()
    deadline = None if timeout is None else loop.time() + timeout
    if isinstance(backend, RedisBackend):  # its pub/sub, awaited on the loop
        async for task_id, payload in _redis_ready(backend, pending, results, deadline):
            yield task_id, results.decode(payload)
    else:
        async for task_id, meta in _polled_ready(app, pending, interval, deadline):
            yield task_id, meta


async def _within(deadline: float | None, awaitable: Awaitable[T], pending: int) -> T:
    """Await ``awaitable`` until the loop's clock reaches ``deadline``; then TimeoutError."""
    try:
        async with asyncio.timeout_at(deadline):
            return await awaitable
    except TimeoutError:
        raise ResultTimeout(f"{pending} result(s) were not ready in time") from None


async def _polled_ready(
    app: AppLike, pending: list[str], interval: float, deadline: float | None
) -> AsyncIterator[tuple[str, dict[str, Any]]]:
    results = app.results
    pause = _POLL_FIRST
    while pending:
        found = await run_blocking(app, results.backend.fetch_many, pending)
        for task_id, payload in found.items():
            meta = results.decode(payload)
            if meta.get("status") in states.READY_STATES:
                pending.remove(task_id)
                yield task_id, meta
        if pending:
            await _within(deadline, asyncio.sleep(pause), len(pending))
            pause = min(pause * 2, interval)


async def _redis_ready(
    backend: Any, pending: list[str], results: Any, deadline: float | None
) -> AsyncIterator[tuple[str, bytes]]:
    """Subscribe to the results' channels, read what is stored, then take what is published."""
    pool = await pool_for(backend.connector)
    channels = {(backend.task_keyprefix + task_id).encode(): task_id for task_id in pending}
    subscriber = pool.new()
    try:
        await _within(deadline, subscriber.send([("SUBSCRIBE", *channels)]), len(pending))
        confirmed: set[bytes] = set()
        early: dict[str, bytes] = {}
        while len(confirmed) < len(channels):  # subscribed to all before reading values
            reply = await _within(deadline, subscriber.read(), len(pending))
            if reply[0] == b"subscribe":
                confirmed.add(reply[1])
            elif reply[0] == b"message" and results.is_ready_payload(bytes(reply[2])):
                early[channels[reply[1]]] = bytes(reply[2])
        async with pool.connection() as conn:
            [values] = await _within(deadline, conn.execute([("MGET", *channels)]), len(pending))
        for task_id, value in zip(list(channels.values()), values, strict=True):
            if task_id not in early and value is not None and results.is_ready_payload(value):
                early[task_id] = bytes(value)
        for task_id, payload in early.items():
            pending.remove(task_id)
            yield task_id, payload
        while pending:
            reply = await _within(deadline, subscriber.read(), len(pending))
            if reply[0] != b"message" or reply[1] not in channels:
                continue
            task_id, payload = channels[reply[1]], bytes(reply[2])
            if task_id in pending and results.is_ready_payload(payload):
                pending.remove(task_id)
                yield task_id, payload
    except RedisError as exc:
        raise backend.connector.describe(exc, "wait for results") from exc
    finally:
        await subscriber.close()


async def wait_result(
    result: AsyncResult[Any], *, timeout: float | None, propagate: bool, interval: float
) -> Any:
    """``result.get()`` for an event loop: the value, or the task's exception raised."""
    if result._ran_in_place:  # an EagerResult: run in place already, nothing to wait for
        return result.get(timeout=timeout, propagate=propagate)
    cached = result._cache
    if cached is None:
        ids = [result.id]
        async for _, ready in wait_ready(result.app, ids, timeout=timeout, interval=interval):
            cached = result._cache = ready
    assert cached is not None
    meta: dict[str, Any] = cached
    value = result.app.results.value_of(meta)
    if propagate and meta["status"] in states.PROPAGATE_STATES:
        raise value
    return value
