"""The Redis broker's consumer: leases in one script, waits by notification, groups its acks.

Each consumer owns two connections of its own (``_Tracker``). One runs the ``TAKE`` script with
client-side tracking on (``CLIENT TRACKING ON REDIRECT <id> OPTOUT NOLOOP``); the other is
subscribed to ``__redis__:invalidate``. When TAKE finds nothing it reads the lists and delayed
sets of its queues, so Redis remembers them, and the first write to any of them by another
client sends an invalidation that wakes the waiting fetch at once. There is no polling and no
BRPOP: a message popped by BRPOP would be in nobody's hands until a second command leased it,
and lost if the consumer died in between; TAKE pops and leases in one atomic step. Redis
without CLIENT TRACKING (before 6.0, or denied by an ACL) is checked every
``polling_interval`` instead. TAKE reads nothing that other consumers write on every delivery
(its ack check is a ZREM, a write, which tracking ignores); RECOVER does, so it is sent after
``CLIENT CACHING NO``.

Acks are grouped: ``ack`` records the lease, and the next fetch acknowledges every recorded
lease inside its TAKE, in the same round trip; a recorded ack is sent at once instead when a
fetch is waiting or 256 have gathered, and ``close`` sends the rest. A recorded ack never waits
for a fetch longer than ``ack_delay`` (the smaller of 0.1 s and a tenth of ``lease_timeout``):
the consumer's ack thread sends what no fetch took by then, since a worker whose slots are all
busy does not fetch, and the lease of an acknowledged delivery is no longer renewed - without
it a task longer than ``lease_timeout`` would be handed out again while it runs. (A worker
killed between its ack and that round trip sees the message again when the lease expires: at
least once, never lost.)

Leases of dead consumers come back through RECOVER, which a fetch runs every
``recover_interval`` seconds and when the earliest lease it knows of expires.
"""

from __future__ import annotations

import contextlib
import threading
import time
import uuid
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from celeriac._redis.client import Connection, RedisError, ResponseError
from celeriac._time import SystemClock
from celeriac.exceptions import TransportError
from celeriac.transports.base import Consumer, Delivery
from celeriac.transports.redis.layout import decode_envelope
from celeriac.transports.redis.scripts import ACK, GIVE_BACK, RECOVER, RENEW, TAKE

if TYPE_CHECKING:
    from celeriac.transports.redis import RedisTransport

__all__ = ["RedisConsumer"]

_INVALIDATE = "__redis__:invalidate"
_LONGEST_PAUSE = 0.5  # how soon a waiting fetch notices close() from another thread
_INJECTED_CLOCK_RECHECK = 0.05  # a ManualClock moved by a test gives no notification
_ACK_BATCH = 256
_ACK_DELAY = 0.1  # at most this long (and a tenth of lease_timeout) before an ack is sent
_ACK_RETRY = 0.5  # after a failed send of acks, the ack thread tries again this much later
_SCRIPTS = {TAKE: "take", RECOVER: "recover", ACK: "ack"}
_RECOVER_LIMIT = 100


class _Tracker:
    """A consumer's two dedicated connections: commands with tracking, and invalidations."""

    def __init__(self, transport: RedisTransport) -> None:
        self._connector = transport.connector
        self._polling_interval = transport.options.polling_interval
        self.conn: Connection | None = None
        self.sub: Connection | None = None
        self.tracking = False
        self.sha: dict[str, str] = {}  # script name -> SHA1, as SCRIPT LOAD said

    def ensure(self) -> None:
        """Connect both connections (if not yet), turn tracking on, load the scripts."""
        if self.conn is not None:
            return
        conn, sub = self._connector.dedicated(), self._connector.dedicated()
        try:
            conn.connect()
            [sub_id, _] = _checked(sub.call([("CLIENT", "ID"), ("SUBSCRIBE", _INVALIDATE)]))
            tracking = ("CLIENT", "TRACKING", "ON", "REDIRECT", sub_id, "OPTOUT", "NOLOOP")
            [reply] = conn.call([tracking])
            if isinstance(reply, ResponseError):  # no tracking on this server: poll instead
                sub.disconnect()
            loaded = _checked(conn.call([("SCRIPT", "LOAD", source) for source in _SCRIPTS]))
        except BaseException:
            conn.disconnect()
            sub.disconnect()
            raise
        self.conn, self.sub = conn, sub if sub.connected else None
        self.tracking = self.sub is not None
        self.sha = {name: sha.decode() for name, sha in zip(_SCRIPTS.values(), loaded, strict=True)}

    def call(self, commands: list[tuple[Any, ...]]) -> list[Any]:
        """Send ``commands`` in one round trip; their replies (the first error is raised)."""
        self.ensure()
        assert self.conn is not None
        try:
            return _checked(self.conn.call(commands))
        except BaseException:
            self.reset()  # e.g. NOSCRIPT after SCRIPT FLUSH: reconnecting loads them again
            raise

    def wait(self, seconds: float) -> bool:
        """Wait up to ``seconds`` for an invalidation; True when one came (or when polling)."""
        if self.sub is None:
            time.sleep(min(seconds, self._polling_interval))
            return True
        try:
            if not self.sub.can_read(seconds):
                return False
            while self.sub.can_read(0):
                self.sub.read()
        except RedisError:
            self.reset()  # the next take reconnects, with the connector's retries
        return True

    def reset(self) -> None:
        for connection in (self.conn, self.sub):
            if connection is not None:
                with contextlib.suppress(Exception):
                    connection.disconnect()
        self.conn = self.sub = None
        self.tracking = False
        self.sha = {}


def _checked(replies: list[Any]) -> list[Any]:
    """``replies``, or the first error among them raised."""
    for reply in replies:
        if isinstance(reply, ResponseError):
            raise reply
    return replies


def _claim_and_tag(delivery: Delivery) -> tuple[str, str]:
    claim, _, tag = delivery.delivery_tag.partition("/")
    return claim, tag


class RedisConsumer(Consumer):
    """Takes deliveries from Redis lists for one worker (module docstring)."""

    def __init__(self, transport: RedisTransport, queues: list[str], owner: str) -> None:
        self._transport = transport
        self._connector = transport.connector
        self._keys = transport.keys
        strategy = transport.options.queue_order_strategy
        self._queues = sorted(queues) if strategy == "sorted" else list(queues)
        self._rotate = strategy == "round_robin"
        self._owner = owner
        self._id = uuid.uuid4().hex[:16]
        self._seq = 0
        self._held: dict[str, str] = {}  # tag -> claim, for every delivery not yet settled
        self._acks: list[str] = []  # leases ("<tag>\t<claim>") acknowledged, not yet sent
        self._lock = threading.Lock()  # guards the fields above and below
        self._acks_due: float | None = None  # monotonic time by which _acks must be sent
        self._ack_delay = min(_ACK_DELAY, transport.options.lease_timeout / 10)
        self._ack_wakeup = threading.Condition(self._lock)
        self._ack_thread: threading.Thread | None = None
        self._waiting = False
        self._closed = False
        self._fetching = threading.Lock()  # one fetch at a time owns the tracker
        self._tracker = _Tracker(transport)
        self._next_recovery = float("-inf")
        self._next_expiry: float | None = None
        self._base_keys = self._keys.consumer_keys()

    # -- fetching -------------------------------------------------------------------------

    def fetch(self, max_count: int, timeout: float) -> list[Delivery]:
        if max_count < 1:
            raise ValueError(f"max_count must be at least 1, not {max_count}")
        deadline = time.monotonic() + max(timeout, 0.0)
        self._transport.dead_store.watch_if_due(deadline)  # bounds and logs the dead letters
        with self._fetching:
            while not self._closed:
                deliveries, next_due = self._take(max_count, deadline)
                if deliveries or time.monotonic() >= deadline:
                    return deliveries
                self._wait(next_due, deadline)
        return []

    def _commands(self, max_count: int, acks: list[str], seq: int) -> list[Any]:
        transport, keys, options = self._transport, self._keys, self._transport.options
        clock = transport.clock
        now = clock.time()
        commands: list[Any] = []
        base = self._base_keys
        due = self._next_expiry is not None and now >= self._next_expiry
        if due or clock.monotonic() >= self._next_recovery:
            if acks:  # before RECOVER, which would otherwise put back what was just acked
                commands.append(("EVALSHA", self._tracker.sha["ack"], 5, *base[:5], *acks))
                acks = []
            ceiling = repr(now - options.visibility_timeout)
            args = [repr(now), _RECOVER_LIMIT, keys.prefix, keys.sep, ceiling]
            args += ["1" if options.restore_visible else "0", *options.priority_steps]
            if self._tracker.tracking:  # its reads change all the time: never track them
                commands.append(("CLIENT", "CACHING", "NO"))
            commands.append(("EVALSHA", self._tracker.sha["recover"], 6, *base, *args))
        queues = self._queues
        queue_keys = [keys.delayed(q) for q in queues]
        queue_keys += [keys.queue(q, step) for step in options.priority_steps for q in queues]
        args = [
            repr(now),
            repr(now + options.lease_timeout),
            max_count,
            f"{self._id}.",
            seq,
            options.max_deliveries,
            "1" if self._rotate else "0",
            len(queues),
            len(options.priority_steps),
            "1" if self._tracker.tracking else "0",
            len(acks),
            *options.priority_steps,
            *queues,
            *acks,
        ]
        commands.append(
            ("EVALSHA", self._tracker.sha["take"], 6 + len(queue_keys), *base, *queue_keys, *args)
        )
        return commands

    def _take(self, max_count: int, deadline: float) -> tuple[list[Delivery], float | None]:
        with self._lock:
            acks, self._acks, self._acks_due = self._acks, [], None
            seq, self._seq = self._seq, self._seq + max_count
        commands: list[Any] = []

        def run() -> list[Any]:
            self._tracker.ensure()
            commands[:] = self._commands(max_count, acks, seq)
            return self._tracker.call(commands)

        try:
            replies = self._connector.run("take messages", run, deadline=deadline)
        except BaseException:
            self._requeue_acks(acks, _ACK_RETRY)  # acks are idempotent: sent again later
            raise
        clock = self._transport.clock
        recover = self._tracker.sha.get("recover")
        if any(command[1] == recover for command in commands[:-1]):
            self._next_recovery = clock.monotonic() + self._transport.options.recover_interval
            expiry = replies[-2][1]
            self._next_expiry = float(expiry) if expiry else None
        reply = replies[-1]
        next_due = float(reply[0]) if reply[0] else None
        return self._deliveries(reply[1:]), next_due

    def _deliveries(self, flat: list[Any]) -> list[Delivery]:
        deliveries: list[Delivery] = []
        broken: list[tuple[str, str, str, str]] = []
        for i in range(0, len(flat), 5):
            index, raw, count, claim_b, tag_b = flat[i : i + 5]
            claim, tag = claim_b.decode(), tag_b.decode()
            queue = self._queues[int(index) - 1]
            try:
                envelope = decode_envelope(raw)
            except ValueError as exc:
                broken.append((tag, claim, str(exc), queue))
                continue
            # "3", or "1r" once given back (see scripts.py)
            counted = count.decode() if isinstance(count, bytes) else str(count)
            number = int(counted.rstrip("r"))
            deliveries.append(
                Delivery(
                    message=envelope.message,
                    delivery_tag=f"{claim}/{tag}",
                    queue=queue,
                    exchange=envelope.exchange,
                    routing_key=envelope.routing_key,
                    redelivered=number > 1 or counted.endswith("r") or envelope.redelivered,
                    delivery_count=number,
                )
            )
        with self._lock:
            for delivery in deliveries:
                claim, tag = _claim_and_tag(delivery)
                self._held[tag] = claim
            if deliveries:
                expiry = self._transport.clock.time() + self._transport.options.lease_timeout
                self._next_expiry = min(self._next_expiry or expiry, expiry)
        if self._rotate:
            for delivery in deliveries:  # kombu's round robin: the queue just used goes last
                self._queues.remove(delivery.queue)
                self._queues.append(delivery.queue)
        if broken:
            at = repr(self._transport.clock.time())
            for tag, claim, reason, queue in broken:
                self._settle("dead", [(tag, claim)], at, reason)
                self._transport.dead_store.rejects.note(queue, reason)
        return deliveries

    def _wait(self, next_due: float | None, deadline: float) -> None:
        clock = self._transport.clock
        injected = not isinstance(clock, SystemClock)
        while True:
            with self._lock:
                if self._closed or self._acks:
                    return
                self._waiting = True
            try:
                pause = min(deadline - time.monotonic(), _LONGEST_PAUSE)
                for due in (next_due, self._next_expiry):
                    if due is not None:
                        pause = min(pause, due - clock.time())
                if injected:
                    pause = min(pause, _INJECTED_CLOCK_RECHECK)
                if pause <= 0 or self._tracker.wait(pause):
                    return
            finally:
                with self._lock:
                    self._waiting = False

    # -- settling deliveries --------------------------------------------------------------

    def ack(self, delivery: Delivery) -> None:
        claim, tag = _claim_and_tag(delivery)
        with self._lock:
            if self._closed or self._held.get(tag) != claim:
                return
            del self._held[tag]
            self._acks.append(f"{tag}\t{claim}")
            if not (self._waiting or len(self._acks) >= _ACK_BATCH):
                self._schedule_acks(self._ack_delay)  # a fetch, or the ack thread, sends it
                return
            acks, self._acks, self._acks_due = self._acks, [], None
        try:  # one try: the caller is the pool's thread, which must not wait out an outage
            self._send_acks(acks, deadline=time.monotonic())
        except TransportError:
            self._requeue_acks(acks, _ACK_RETRY)  # a fetch or the ack thread tries again

    def _schedule_acks(self, delay: float) -> None:
        """(Under the lock.) Have the recorded acks sent within ``delay`` seconds."""
        due = time.monotonic() + delay
        if self._acks_due is None or due < self._acks_due:
            self._acks_due = due
            self._ack_wakeup.notify()
        if self._ack_thread is None:
            self._ack_thread = threading.Thread(
                target=self._send_acks_when_due, name="RedisAcks", daemon=True
            )
            self._ack_thread.start()

    def _requeue_acks(self, acks: list[str], delay: float) -> None:
        """Acks whose sending failed: recorded again, to be sent within ``delay``."""
        with self._lock:
            if self._closed or not acks:
                return
            self._acks[:0] = acks
            self._schedule_acks(delay)

    def _send_acks_when_due(self) -> None:
        """The ack thread: sends the recorded acks that no fetch took in time."""
        while True:
            with self._lock:
                while not self._closed and (
                    self._acks_due is None or time.monotonic() < self._acks_due
                ):
                    due = self._acks_due
                    self._ack_wakeup.wait(None if due is None else due - time.monotonic())
                if self._closed:
                    return
                acks, self._acks, self._acks_due = self._acks, [], None
            try:
                if acks:
                    self._send_acks(acks, deadline=time.monotonic())
            except Exception:  # e.g. the broker is away: its lease may lapse, never lost
                self._requeue_acks(acks, _ACK_RETRY)

    def _send_acks(self, acks: list[str], deadline: float | None = None) -> None:
        keys = self._base_keys[:5]
        self._connector.run(
            "acknowledge", lambda: self._connector.script(ACK, keys, acks), deadline=deadline
        )

    def _settle(self, mode: str, held: list[tuple[str, str]], at: str, reason: str = "") -> None:
        """Run GIVE_BACK in ``mode`` for ``held`` (tag, claim) pairs."""
        keys = self._keys
        leases = [f"{tag}\t{claim}" for tag, claim in held]
        args = [mode, at, keys.prefix, keys.sep, reason, *leases]
        doing = {"front": "give back", "back": "requeue", "failed": "requeue", "defer": "defer"}
        doing["dead"] = "dead-letter"
        self._connector.run(
            f"{doing[mode]} messages",
            lambda: self._connector.script(GIVE_BACK, self._base_keys, args),
        )

    def _give_back(self, mode: str, delivery: Delivery, at: float, reason: str = "") -> None:
        claim, tag = _claim_and_tag(delivery)
        with self._lock:
            if self._closed or self._held.get(tag) != claim:
                return
            del self._held[tag]
        try:
            self._settle(mode, [(tag, claim)], repr(at), reason)
        except BaseException:
            with self._lock:
                self._held[tag] = claim
            raise

    def reject(self, delivery: Delivery, *, requeue: bool, failed: bool = False) -> None:
        if not requeue:
            self.dead_letter(delivery, "rejected")
            return
        self._give_back("failed" if failed else "back", delivery, self._transport.clock.time())

    def defer(self, delivery: Delivery, until: float) -> None:
        if not self._transport.capabilities.delayed_delivery:
            raise NotImplementedError("delayed_delivery is off for this Redis broker")
        self._give_back("defer", delivery, until)

    def dead_letter(self, delivery: Delivery, reason: str) -> None:
        self._give_back("dead", delivery, self._transport.clock.time(), reason)

    def renew(self, deliveries: Sequence[Delivery]) -> None:
        with self._lock:
            leases = [
                f"{tag}\t{claim}"
                for claim, tag in map(_claim_and_tag, deliveries)
                if not self._closed and self._held.get(tag) == claim
            ]
        if not leases:
            return
        now = self._transport.clock.time()
        args = [repr(now), repr(now + self._transport.options.lease_timeout), *leases]
        keys = self._base_keys[:4]
        self._connector.run("renew leases", lambda: self._connector.script(RENEW, keys, args))

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            acks, self._acks, self._acks_due = self._acks, [], None
            held, self._held = list(self._held.items()), {}
            self._ack_wakeup.notify_all()
        try:
            if acks:
                self._send_acks(acks)
            if held:
                self._settle("front", held, "0")
        except TransportError:
            pass  # unreachable: those messages come back when their leases expire
        finally:
            with self._fetching:  # a waiting fetch notices _closed within _LONGEST_PAUSE
                self._tracker.reset()
            self._transport._forget(self)
