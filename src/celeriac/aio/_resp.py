"""An asyncio Redis connection speaking RESP2, for the async client API on Redis.

It reuses the settings and locator of the app's ``RedisConnector`` (address, database,
credentials, TLS, Sentinel) and the command packing of ``celeriac._redis.client``, so the
async path opens the same connection the sync one would, on the event loop: no thread per
call. ``RedisPool`` keeps a few idle connections per event loop and connector; each call
takes one, so concurrent coroutines never interleave their replies.
"""

from __future__ import annotations

import asyncio
import contextlib
import weakref
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Sequence
from typing import Any

from celeriac._redis.client import (
    Address,
    ConnectionError,
    ConnectSettings,
    ResponseError,
    _error,
    pack,
)

__all__ = ["AsyncRedisConnection", "RedisPool", "close_pools", "pool_for"]

_IDLE = 8  # idle connections kept per loop and connector


class AsyncRedisConnection:
    """One asyncio connection to Redis; one coroutine at a time uses it."""

    def __init__(self, settings: ConnectSettings, locate: Callable[[], Address]) -> None:
        self.settings = settings
        self._locate = locate
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def connect(self) -> None:
        if self._writer is not None:
            return
        kind, host, port = self._locate()
        settings = self.settings
        try:
            if kind == "unix":
                opening = asyncio.open_unix_connection(host)
            else:
                opening = asyncio.open_connection(
                    host, port, ssl=settings.tls, server_hostname=host if settings.tls else None
                )
            self._reader, self._writer = await asyncio.wait_for(opening, settings.connect_timeout)
        except (TimeoutError, OSError) as exc:
            raise ConnectionError(f"Error connecting to {host}:{port}: {exc!r}") from exc
        commands = settings.commands()
        if commands:
            for reply in await self.call(commands):
                if isinstance(reply, ResponseError):
                    await self.close()
                    raise reply

    async def send(self, commands: Sequence[Sequence[Any]]) -> None:
        await self.connect()
        assert self._writer is not None
        try:
            self._writer.write(b"".join(pack(command) for command in commands))
            await self._writer.drain()
        except OSError as exc:
            await self.close()
            raise ConnectionError(f"Error writing to Redis: {exc!r}") from exc

    async def call(self, commands: Sequence[Sequence[Any]]) -> list[Any]:
        """Send ``commands`` in one write; their replies (errors as ResponseError values)."""
        await self.send(commands)
        return [await self.read() for _ in commands]

    async def execute(
        self, commands: Sequence[Sequence[Any]], *, transaction: bool = False
    ) -> list[Any]:
        """As ``RedisConnector.execute``: raise the first error reply; unwrap MULTI/EXEC."""
        if transaction:
            commands = [("MULTI",), *commands, ("EXEC",)]
        replies = await self.call(commands)
        for reply in replies:
            if isinstance(reply, ResponseError):
                raise reply
        if not transaction:
            return replies
        result = replies[-1]
        if not isinstance(result, list):
            raise ResponseError(f"EXECABORT transaction discarded: {result!r}")
        for reply in result:
            if isinstance(reply, ResponseError):
                raise reply
        return result

    async def read(self) -> Any:
        """The next reply: bytes, int, None, a list, or a ResponseError."""
        reader = self._reader
        if reader is None:
            raise ConnectionError("Connection closed")
        try:
            line = (await reader.readuntil(b"\r\n"))[:-2]
            kind, rest = line[:1], line[1:]
            if kind == b"$":
                size = int(rest)
                return None if size < 0 else (await reader.readexactly(size + 2))[:-2]
            if kind == b"*":
                count = int(rest)
                return None if count < 0 else [await self.read() for _ in range(count)]
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError) as exc:
            await self.close()
            raise ConnectionError(f"Error reading from Redis: {exc!r}") from exc
        if kind == b":":
            return int(rest)
        if kind == b"+":
            return rest
        if kind == b"-":
            return _error(rest.decode("utf-8", "replace"))
        await self.close()
        raise ConnectionError(f"Protocol error from Redis: {line[:50]!r}")

    async def close(self) -> None:
        writer, self._writer, self._reader = self._writer, None, None
        if writer is not None:
            writer.close()
            with contextlib.suppress(OSError, RuntimeError):
                await writer.wait_closed()


class RedisPool:
    """Idle connections of one connector on one event loop (closed with the loop)."""

    def __init__(self, settings: ConnectSettings, locate: Callable[[], Address]) -> None:
        self._settings = settings
        self._locate = locate
        self._idle: list[AsyncRedisConnection] = []
        self._closer: AsyncGenerator[None, None] | None = None

    def new(self) -> AsyncRedisConnection:
        """A connection of the caller's own (a subscriber), not kept by the pool."""
        return AsyncRedisConnection(self._settings, self._locate)

    async def close(self) -> None:
        idle, self._idle = self._idle, []
        for conn in idle:
            await conn.close()

    async def close_with_the_loop(self) -> None:
        """Close the idle connections when the loop shuts down (``asyncio.run`` and uvicorn
        finalize open async generators then), so no socket outlives its loop."""

        async def closer() -> AsyncGenerator[None, None]:
            try:
                yield
            finally:
                await self.close()

        self._closer = closer()
        await self._closer.__anext__()

    @contextlib.asynccontextmanager
    async def connection(self) -> AsyncIterator[AsyncRedisConnection]:
        """A connection for the block; kept for the next caller unless the block failed."""
        conn = (
            self._idle.pop() if self._idle else AsyncRedisConnection(self._settings, self._locate)
        )
        healthy = False
        try:
            yield conn
            healthy = True
        finally:
            if healthy and len(self._idle) < _IDLE:
                self._idle.append(conn)
            else:
                await conn.close()


_pools: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[int, tuple[object, RedisPool]]]
_pools = weakref.WeakKeyDictionary()


async def pool_for(connector: Any) -> RedisPool:
    """The pool of ``connector`` (a ``RedisConnector``) on the running event loop."""
    loop = asyncio.get_running_loop()
    pools = _pools.setdefault(loop, {})
    entry = pools.get(id(connector))
    if entry is None or entry[0] is not connector:
        entry = (connector, RedisPool(connector.settings, connector.locate))
        pools[id(connector)] = entry
        await entry[1].close_with_the_loop()
    return entry[1]


async def close_pools() -> None:
    """Close the idle connections of every pool on the running loop."""
    for _, pool in _pools.pop(asyncio.get_running_loop(), {}).values():
        await pool.close()
