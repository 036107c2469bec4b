"""The embedded SQLite broker (``sqlite:///relative/path``, ``sqlite:////absolute/path``).

``SQLiteTransport`` (in ``transport``, whose docstring draws the tables) is the package's
public name; the other modules are its parts::

    transport.py     SQLiteTransport: publish, declare, purge, counts, options
    db.py            the SQL, the schema and the per-thread connections
    consumer.py      SQLiteConsumer: fetch, ack, reject, visibility
    broadcast.py     broadcasts through the file (remote control, events)
    dead_letters.py  the dead-letter table and its limits
"""

from celeriac.transports.sqlite.transport import SQLiteTransport

__all__ = ["SQLiteTransport"]
