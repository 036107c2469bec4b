"""The RabbitMQ broker over AMQP 0-9-1 (``amqp://``, ``pyamqp://``, ``amqps://``).

``AmqpTransport`` (in ``transport``, whose docstring draws the exchanges and queues) is the
package's public name; the other modules are its parts::

    transport.py     AmqpTransport: publish, declare, purge, counts, options
    topology.py      exchanges, queues, delay levels, headers; to/from AMQP messages
    consumer.py      AmqpConsumer: basic.consume on an I/O thread, fetch, settle
    buffer.py        the prefetched deliveries, per queue and priority
    lease.py         deliveries held near consumer_timeout handed over to lease queues
    broadcast.py     Celery's pidbox (fanout) and event (topic) exchanges
    dead_letters.py  the bounded dead-letter queue

The client it speaks through is ``celeriac._amqp`` (py-amqp: ``pip install "celeriac[amqp]"``).
"""

from celeriac.transports.amqp.transport import AmqpTransport

__all__ = ["AmqpTransport"]
