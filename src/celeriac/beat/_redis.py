"""The Redis connection beat keeps its schedule store and leader lease in (Celeriac's client).

``RedisConnection`` reaches the Redis of a ``redis://`` or ``rediss://`` URL (the database is
the URL's) through ``celeriac._redis``, the client the Redis broker and result backend use:
no Redis client library is needed. It runs commands and Lua scripts (by SHA, loaded again if
the server lost them), retries while Redis cannot be reached (up to 10 times, pauses growing
to a second, as redis-py's default retry did), and turns every client error into
``OperationalError`` naming the server and what to do. ``default_prefix`` is where an app's
beat keys live when nothing else is said, so several apps can share one Redis.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

from celeriac._redis.connection import RedisConnector, RetryPolicy
from celeriac.exceptions import ImproperlyConfigured, OperationalError

__all__ = ["RedisConnection", "default_prefix"]

T = TypeVar("T")

_TIMEOUT = 10.0
_RETRY = RetryPolicy(max_retries=10, interval_start=0.0, interval_step=0.05, interval_max=1.0)


def default_prefix(main: str | None, options: Mapping[str, Any] | None = None) -> str:
    """``beat_key_prefix`` from the transport options, or the broker's ``global_keyprefix``
    followed by ``celeriac-beat:<main>:``."""
    opts = options or {}
    explicit = opts.get("beat_key_prefix")
    if explicit:
        return str(explicit)
    return f"{opts.get('global_keyprefix') or ''}celeriac-beat:{main or 'default'}:"


class RedisConnection:
    """Commands and scripts on the Redis of ``url``, with errors translated."""

    def __init__(self, url: str, *, what: str) -> None:
        self.what = what
        if url.partition("://")[0].lower() not in ("redis", "rediss"):
            raise ImproperlyConfigured(
                f"cannot use the Redis URL of the {what}: it must be redis:// or rediss://; "
                "use redis://host:port/db"
            )
        timeouts = {"socket_timeout": _TIMEOUT, "socket_connect_timeout": _TIMEOUT}
        try:
            self._connector = RedisConnector(
                url, timeouts, what=what, error=OperationalError, retry=_RETRY
            )
        except ImproperlyConfigured as exc:
            raise ImproperlyConfigured(
                f"cannot use the Redis URL of the {what}: {exc}; use redis://host:port/db"
            ) from exc
        address = self._connector.address
        host, port = address.hosts[0]
        self.server = f"{host}:{port}/{address.db}"  # no password: it goes in messages

    def script(self, source: str) -> Callable[[str, Sequence[str], Sequence[Any]], Any]:
        """A Lua script: ``run(action, keys, args)`` sends it by SHA."""

        def run(action: str, keys: Sequence[str], args: Sequence[Any]) -> Any:
            return self._run(action, lambda: self._connector.script(source, keys, args))

        return run

    def execute(
        self, action: str, *commands: Sequence[Any], transaction: bool = False
    ) -> list[Any]:
        """The replies to ``commands``, sent in one round trip (one MULTI/EXEC when
        ``transaction``)."""
        return self._run(action, lambda: self._connector.execute(commands, transaction=transaction))

    def _run(self, action: str, operation: Callable[[], T]) -> T:
        try:
            return self._connector.run(action, operation)
        except OperationalError as exc:  # the connector's wording; beat's says where and what
            cause = exc.__cause__ or exc
            raise OperationalError(
                f"could not {action} in the {self.what} at Redis {self.server}: {cause};"
                " check that the Redis server is running and reachable"
            ) from cause

    def close(self) -> None:
        self._connector.close()
