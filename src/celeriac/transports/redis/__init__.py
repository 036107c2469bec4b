"""The Redis broker (``redis://``, ``rediss://``, ``redis+socket://``, ``sentinel://``).

``RedisTransport`` (in ``transport``, whose docstring draws the keys) is the package's public
name; the other modules are its parts::

    transport.py     RedisTransport: publish, declare, purge, counts, options
    layout.py        kombu's key names and message envelope (Keys, encode/decode)
    consumer.py      RedisConsumer: fetch, ack, reject, visibility, restore
    publish.py       the idempotent publish (a retried publish lands once)
    broadcast.py     fanout (pidbox, events) over PUBLISH / SUBSCRIBE
    dead_letters.py  the dead-letter list and its limits
    scripts.py       the Lua scripts (``*.lua`` beside it), loaded at import

The client it speaks through is ``celeriac._redis``.
"""

from celeriac.transports.redis.transport import RedisTransport

__all__ = ["RedisTransport"]
