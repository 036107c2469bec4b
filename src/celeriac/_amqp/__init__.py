"""The AMQP 0-9-1 client side shared by the RabbitMQ broker and the ``rpc://`` result backend.

On py-amqp (``pip install "celeriac[amqp]"``), imported lazily through ``driver``::

    celeriac/_amqp/
      driver.py      py-amqp, imported once; ImproperlyConfigured naming the extra if missing
      connection.py  URL and TLS settings, Connector, which errors are recoverable, translate
      io.py          IOConnection: a connection owned by one I/O thread that heartbeats
      pool.py        ConnectionPool and Session: pooled connections lent to one thread

This package is the bottom (client) layer: it imports nothing from ``celeriac.transports``,
``celeriac.backends``, ``celeriac.app`` or above.
"""
