"""The Redis connection beat keeps its schedule store and leader lease in (redis-py, used directly).

``RedisConnection`` opens one client from a ``redis://`` or ``rediss://`` URL (the database
is the URL's), imports redis-py only then (``ImproperlyConfigured`` naming the ``redis``
extra when it is missing), loads Lua scripts, and turns every redis-py error into
``OperationalError`` naming the server and what to do. ``default_prefix`` is where an app's
beat keys live when nothing else is said, so several apps can share one Redis.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from celeriac.exceptions import ImproperlyConfigured, OperationalError

__all__ = ["RedisConnection", "default_prefix"]

_TIMEOUT = 10.0


def default_prefix(main: str | None, options: Mapping[str, Any] | None = None) -> str:
    """``beat_key_prefix`` from the transport options, or the broker's ``global_keyprefix``
    followed by ``celeriac-beat:<main>:``."""
    opts = options or {}
    explicit = opts.get("beat_key_prefix")
    if explicit:
        return str(explicit)
    return f"{opts.get('global_keyprefix') or ''}celeriac-beat:{main or 'default'}:"


class RedisConnection:
    """One redis-py client for ``url``; ``call`` runs commands with errors translated."""

    def __init__(self, url: str, *, what: str) -> None:
        try:
            import redis
        except ImportError as exc:
            raise ImproperlyConfigured(
                f"the {what} is in Redis ({url.partition('://')[0]}://), but the redis client"
                ' is not installed: pip install "celeriac[redis]"'
            ) from exc
        self.what = what
        self._errors: tuple[type[BaseException], ...] = (redis.RedisError,)
        try:
            self.client: Any = redis.Redis.from_url(
                url, socket_timeout=_TIMEOUT, socket_connect_timeout=_TIMEOUT
            )
        except (ValueError, redis.RedisError) as exc:
            raise ImproperlyConfigured(
                f"cannot use the Redis URL of the {what}: {exc}; use redis://host:port/db"
            ) from exc
        kwargs = self.client.connection_pool.connection_kwargs
        where = kwargs.get("path") or f"{kwargs.get('host')}:{kwargs.get('port')}"
        self.server = f"{where}/{kwargs.get('db', 0)}"  # no password: it goes in messages

    def script(self, source: str) -> Any:
        """A Lua script, sent by SHA after its first use (redis-py reloads it if flushed)."""
        return self.client.register_script(source)

    @contextmanager
    def call(self, action: str) -> Iterator[Any]:
        """The client; redis-py errors inside become ``OperationalError``."""
        try:
            yield self.client
        except self._errors as exc:
            raise OperationalError(
                f"could not {action} in the {self.what} at Redis {self.server}: {exc};"
                " check that the Redis server is running and reachable"
            ) from exc

    def close(self) -> None:
        self.client.close()
