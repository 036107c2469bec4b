"""A connection owned by one I/O thread, which runs every command that touches it.

Why a thread owns the consuming connection: py-amqp connections are not thread-safe, and a
worker uses its consumer from several threads at once (the consumer thread fetches while
pool threads acknowledge). Acknowledgements and deliveries also have to share one channel,
since AMQP delivery tags belong to the channel that received them. And the connection must
keep answering heartbeats while the worker is too busy to fetch, or RabbitMQ closes it and
requeues every unacknowledged message. So one thread owns the socket: it sleeps in
``select`` on the socket and a wake-up pipe, reads frames as they arrive (deliveries are
handed to the owner's callbacks), runs the commands other threads queue with ``submit`` (in
order, so an ack queued before a close is sent before it), and ticks heartbeats. A TLS
socket is read and written only by this thread, which OpenSSL requires.

Recovery: when the connection breaks (socket error, missed heartbeats, the broker closing it
or a channel), the thread reconnects with backoff (``Backoff``: the failover addresses in
turn) and calls ``on_connect`` again, which re-declares and re-consumes; each (re)connection
has a new ``generation`` so stale delivery tags are recognised. Commands queued while
disconnected wait for the new connection. After ``max_retries`` failed attempts in a row, or
an error that retrying cannot fix (wrong credentials, unknown vhost), the thread gives up and
``failure`` says why.
"""

from __future__ import annotations

import logging
import select
import socket
import ssl
import threading
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from contextlib import suppress
from typing import Any, TypeVar

from celeriac._amqp.connection import RECOVERABLE, Connector, close_quietly, translate
from celeriac._amqp.driver import amqp, amqp_errors
from celeriac.exceptions import CeleryError, ImproperlyConfigured, TransportError

__all__ = ["IOConnection"]

logger = logging.getLogger("celeriac.amqp")

T = TypeVar("T")

_FRAMES_PER_TURN = 256  # frames read before queued commands get their turn again

Command = Callable[[amqp.Connection], Any]


class IOConnection:
    """Runs ``on_connect`` on each (re)connection and queued commands, in its own thread."""

    def __init__(
        self,
        connector: Connector,
        *,
        name: str,
        on_connect: Callable[[amqp.Connection, int], None],
        on_disconnect: Callable[[], None],
        on_turn: Callable[[amqp.Connection], None] | None = None,
        tick: float = 1.0,
    ) -> None:
        self.connector = connector
        self.name = name
        self._tick = tick  # the longest pause between turns of the loop (on_turn, heartbeats)
        self._on_connect = on_connect
        self._on_disconnect = on_disconnect
        self._on_turn = on_turn
        self._commands: deque[tuple[Command, Future[Any]]] = deque()
        self._lock = threading.Lock()
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._stopping = False
        self._wake_pending = False  # a byte is in the wake-up pipe
        self._final: Command | None = None
        self.generation = 0  # bumped for each connection, before on_connect runs
        self.connections = 0  # connections that were set up and served
        self.connected = threading.Event()
        self.failure: CeleryError | None = None
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> None:
        self._thread.start()

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def submit(self, command: Command) -> Future[Any]:
        """Queue ``command(connection)`` to run in the I/O thread; its future has the result."""
        future: Future[Any] = Future()
        with self._lock:
            if self._stopping or self.failure is not None:
                future.set_exception(self._gone())
                return future
            self._commands.append((command, future))
            wake = not self._wake_pending  # one byte in the pipe wakes the thread for all
            self._wake_pending = True
        if wake:
            self._wake()
        return future

    def call(self, command: Command, timeout: float) -> Any:
        """Run ``command`` in the I/O thread and wait for its result (``TransportError`` if
        it does not finish within ``timeout`` seconds)."""
        future = self.submit(command)
        try:
            return future.result(timeout)
        except TimeoutError:
            future.cancel()
            raise TransportError(
                f"RabbitMQ at {self.connector.shown}: no answer within {timeout:g} s "
                f"({'connected' if self.connected.is_set() else 'reconnecting'})."
            ) from None

    def stop(self, final: Command | None = None, timeout: float = 10.0) -> None:
        """Run ``final(connection)`` (if connected), close the connection, end the thread."""
        with self._lock:
            stopping, self._stopping = self._stopping, True  # (set too when the thread gave up)
            if not stopping:
                self._final = final
        if not stopping:
            self._wake()
            if self._thread.is_alive() and threading.current_thread() is not self._thread:
                self._thread.join(timeout)
        if not self._thread.is_alive():
            self._wake_r.close()
            self._wake_w.close()

    def _gone(self) -> CeleryError:
        if self.failure is not None:
            return self.failure
        return TransportError(f"The AMQP consumer of {self.connector.shown} is closed.")

    def _wake(self) -> None:
        with suppress(OSError):  # buffer full (already woken) or closed
            self._wake_w.send(b"\0")

    # -- the thread -------------------------------------------------------------------------

    def _run(self) -> None:
        connection: amqp.Connection | None = None
        try:
            while not self._stopping:
                connection = self._connect()
                if connection is None:
                    break
                try:
                    self._serve(connection)
                except (*RECOVERABLE, amqp_errors.AMQPError) as exc:
                    if self._stopping:
                        break
                    logger.warning(
                        "Lost the connection to RabbitMQ at %s (%s); reconnecting.",
                        self.connector.shown,
                        exc,
                    )
                    self._lost(connection)
                    connection = None
            if connection is not None and self._final is not None:
                self._run_final(connection)
        finally:
            close_quietly(connection)
            self.connected.clear()
            self._fail_pending()

    def _connect(self) -> amqp.Connection | None:
        """A connection set up by ``on_connect``, after as many attempts as allowed."""
        backoff = self.connector.backoff
        attempt = 0
        while not self._stopping:
            connection = None
            try:
                connection = self.connector.connect(heartbeat=True, name=self.name)
                self.generation += 1
                self._on_connect(connection, self.generation)
            except (CeleryError, *RECOVERABLE, amqp_errors.AMQPError) as exc:
                close_quietly(connection)
                error = (
                    exc
                    if isinstance(exc, CeleryError)
                    else translate(exc, "start consuming", self.connector.shown)
                )
                may_retry = (
                    self.connector.retry_after_loss
                    if self.connections
                    else self.connector.retry_on_startup
                )
                if (
                    isinstance(error, ImproperlyConfigured)
                    or not may_retry
                    or (backoff.max_retries is not None and attempt >= backoff.max_retries)
                ):
                    self.failure = error
                    if not isinstance(error, ImproperlyConfigured):
                        why = (
                            f"Gave up after {attempt} reconnection attempts "
                            "(broker_connection_max_retries)."
                            if may_retry
                            else "Not retried: broker_connection_retry"
                            f"{'' if self.connections else '_on_startup'} is off."
                        )
                        self.failure = TransportError(f"{error} {why}")
                    logger.error("Cannot consume from RabbitMQ: %s", self.failure)
                    return None
                pause = backoff.interval(attempt)
                attempt += 1
                logger.warning("%s Retrying in %.1f s (attempt %d).", error, pause, attempt)
                self._pause(pause)
                continue
            self.connections += 1
            self.connected.set()
            if attempt:
                logger.info("Reconnected to RabbitMQ at %s.", self.connector.shown)
            return connection
        return None

    def _pause(self, seconds: float) -> None:
        try:
            select.select([self._wake_r], [], [], seconds)
            self._drain_wakeups()
        except (OSError, ValueError):
            pass

    def _lost(self, connection: amqp.Connection) -> None:
        self.connected.clear()
        close_quietly(connection)
        self._on_disconnect()

    def _serve(self, connection: amqp.Connection) -> None:
        heartbeat = connection.heartbeat or 0
        tick = min(heartbeat / 4, self._tick) if heartbeat else self._tick
        while not self._stopping:
            self._run_commands(connection)
            self._read_frames(connection, tick)
            if self._on_turn is not None:
                self._on_turn(connection)
            if heartbeat:
                connection.heartbeat_tick()

    def _run_commands(self, connection: amqp.Connection) -> None:
        while True:
            with self._lock:
                if not self._commands:
                    return
                command, future = self._commands.popleft()
            if not future.set_running_or_notify_cancel():
                continue
            try:
                future.set_result(command(connection))
            except RECOVERABLE:
                # The connection broke mid-command: run the command again on the next
                # connection (commands check ``generation``), and let the loop reconnect.
                with self._lock:
                    self._commands.appendleft((command, _rearmed(future)))
                raise
            except amqp_errors.AMQPError as exc:
                # The broker closed a channel over this command: fail it, rebuild everything.
                future.set_exception(translate(exc, "run a command", self.connector.shown))
                raise
            except BaseException as exc:
                future.set_exception(exc)

    def _read_frames(self, connection: amqp.Connection, timeout: float) -> None:
        transport = connection.transport
        sock = transport.sock
        for turn in range(_FRAMES_PER_TURN):
            buffered = bool(transport._read_buffer) or (
                isinstance(sock, ssl.SSLSocket) and sock.pending() > 0
            )
            if not buffered:
                wait = timeout if turn == 0 else 0.0
                readable, _, _ = select.select([sock, self._wake_r], [], [], wait)
                if self._wake_r in readable:
                    self._drain_wakeups()
                if sock not in readable:
                    return
            # One frame (drain_events would block for another after a heartbeat frame); a
            # stalled peer is bounded by the timeout.
            connection.blocking_read(timeout=self.connector.confirm_timeout)

    def _drain_wakeups(self) -> None:
        try:
            while self._wake_r.recv(4096):
                pass
        except OSError:
            pass
        # Only now (a byte written while draining would be eaten): commands queued from here
        # on write a byte again; those queued before are run by the loop's next turn.
        with self._lock:
            self._wake_pending = False

    def _run_final(self, connection: amqp.Connection) -> None:
        assert self._final is not None
        try:
            self._run_commands(connection)
            self._final(connection)
        except (*RECOVERABLE, amqp_errors.AMQPError) as exc:
            logger.debug("Closing the RabbitMQ connection: %s", exc)

    def _fail_pending(self) -> None:
        with self._lock:
            self._stopping = True
            pending, self._commands = list(self._commands), deque()
        for _, future in pending:
            if future.set_running_or_notify_cancel():
                future.set_exception(self._gone())


def _rearmed(future: Future[Any]) -> Future[Any]:
    """A future that forwards its outcome to ``future`` (already marked running)."""
    fresh: Future[Any] = Future()

    def forward(done: Future[Any]) -> None:
        if done.cancelled():
            future.set_exception(TransportError("cancelled"))
        elif done.exception() is not None:
            future.set_exception(done.exception())
        else:
            future.set_result(done.result())

    fresh.add_done_callback(forward)
    return fresh
