"""Celeriac's own Redis client, shared by the Redis broker, result backend and beat.

No Redis client library is needed: ``client`` speaks RESP2 over TCP, TLS or a unix socket
(one ``Connection`` per socket, Sentinel master discovery), and ``connection`` turns a
Celery-style URL and options into connections (``RedisConnector``: per-thread connections,
TLS settings, ``RetryPolicy`` and error translation into Celeriac's exceptions)::

    celeriac/_redis/
      client.py      RESP2 packing and parsing, Connection, ConnectSettings, the error tree
      connection.py  parse_url (redis://, rediss://, redis+socket://, sentinel://), TLS,
                     RetryPolicy, RedisConnector (execute, script by SHA, run with retries)

This package is the bottom (client) layer: it imports nothing from ``celeriac.transports``,
``celeriac.backends``, ``celeriac.app`` or above.
"""
