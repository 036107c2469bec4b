"""The Redis broker's dead-letter store (the keys are drawn in ``celeriac.transports.redis``).

    _celeriac.dead_letters         LIST  JSON {"queue", "reason", "at", "envelope_encoding",
                                         "envelope"}, oldest first
    _celeriac.dead_letters.limits  HASH  max_entries (read by the scripts that set letters
                                         aside), dropped, unseen (counters this module resets)
    _celeriac.dead_letters.unlogged LIST {"queue", "reason"} of the last 10 unlogged letters

The consumer scripts (``scripts``) set letters aside: each makes room first, so the
list never holds more than ``max_entries``, and counts what it dropped and what no Python
caller will log (letters set aside inside Redis: queue entries that are not envelopes,
messages delivered ``max_deliveries`` times), keeping the last ten of those in ``unlogged``.
``WATCH`` (run when a consumer starts, every ``WATCH_INTERVAL`` seconds while it fetches, and
before every read) writes the limits, drops letters older than the age limit, and hands back
and resets the counters and the unlogged letters, which are then logged (rate-limited) here;
more than ten since the last watch are counted in one line.

A letter's id is the first 16 hex digits of the SHA-1 of its entry. ``REQUEUE`` removes the
exact entry and pushes the message back to its queue in one script, so a letter is requeued
at most once.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
from typing import TYPE_CHECKING, Any

from celeriac.exceptions import TransportError
from celeriac.protocol.message import Message
from celeriac.transports._dead_letters import DeadLetterLimits, RejectLog, log_dropped
from celeriac.transports.base import DeadLetter
from celeriac.transports.redis.layout import decode_envelope, encode_envelope

if TYPE_CHECKING:
    from celeriac.transports.redis import RedisTransport

__all__ = ["WATCH_INTERVAL", "RedisDeadLetters"]

logger = logging.getLogger("celeriac.dead_letters")

WATCH_INTERVAL = 5.0

# KEYS: the list, its limits hash, its unlogged list. ARGV: max entries ('' for none), oldest
# time kept ('' for none). Returns {dropped, unseen, the last unlogged {"queue", "reason"}}.
WATCH = """
local limits, cap, oldest = KEYS[2], tonumber(ARGV[1]), tonumber(ARGV[2])
if cap then redis.call('HSET', limits, 'max_entries', cap)
else redis.call('HDEL', limits, 'max_entries') end
local dropped = tonumber(redis.call('HGET', limits, 'dropped') or '0')
if oldest then
  for _ = 1, 100000 do
    local first = redis.call('LINDEX', KEYS[1], 0)
    local at = first and tonumber(string.match(first, '"at": ([^,}]+)'))
    if not at or at >= oldest then break end
    redis.call('LPOP', KEYS[1])
    dropped = dropped + 1
  end
end
if cap then
  local extra = redis.call('LLEN', KEYS[1]) - cap
  if extra > 0 then
    redis.call('LTRIM', KEYS[1], extra, -1)
    dropped = dropped + extra
  end
end
local unseen = tonumber(redis.call('HGET', limits, 'unseen') or '0')
local recent = redis.call('LRANGE', KEYS[3], 0, -1)
redis.call('DEL', KEYS[3])
redis.call('HSET', limits, 'dropped', 0, 'unseen', 0)
return {dropped, unseen, recent}
"""

# KEYS: the list, the queue's list. ARGV: the exact entry, the envelope to push.
REQUEUE = """
if redis.call('LREM', KEYS[1], 1, ARGV[1]) == 0 then return 0 end
redis.call('LPUSH', KEYS[2], ARGV[2])
return 1
"""


class RedisDeadLetters:
    """The dead letters of one Redis broker, bounded by ``limits``."""

    def __init__(self, transport: RedisTransport, limits: DeadLetterLimits) -> None:
        self._transport = transport
        self.limits = limits
        self.rejects = RejectLog(clock=transport.clock)
        self._next_watch = float("-inf")
        dead = transport.keys.dead_letters
        self._keys = [dead, dead + ".limits", dead + ".unlogged"]

    def watch(self, deadline: float | None = None) -> None:
        """Write the limits, drop letters past the age limit, log what needs logging.

        ``deadline`` (monotonic) caps the retrying while Redis cannot be reached.
        """
        transport = self._transport
        cap = "" if self.limits.max_entries is None else str(self.limits.max_entries)
        oldest = self.limits.oldest_kept(transport.clock.time())
        args = [cap, "" if oldest is None else repr(oldest)]
        connector = transport.connector
        dropped, unseen, recent = connector.run(
            "bound the dead letters",
            lambda: connector.script(WATCH, self._keys, args),
            deadline=deadline,
        )
        self._next_watch = transport.clock.monotonic() + WATCH_INTERVAL
        log_dropped(f"Redis broker {connector.address.shown}", int(dropped), self.limits)
        for entry in recent:
            about = json.loads(entry.decode("utf-8", "replace"))
            self.rejects.note(str(about.get("queue")), str(about.get("reason")))
        if int(unseen) > len(recent):
            logger.warning(
                "%d more message(s) were set aside in the dead-letter store by the broker "
                "(see celeriac dlq list).",
                int(unseen) - len(recent),
            )

    def watch_if_due(self, deadline: float) -> None:
        """``watch`` when ``WATCH_INTERVAL`` has passed since the last time (a consumer's
        fetch calls it); an unreachable Redis is left for the fetch itself to report."""
        if self._transport.clock.monotonic() < self._next_watch:
            return
        try:
            self.watch(deadline)
        except TransportError as exc:
            logger.debug("Could not bound the dead letters now: %s", exc)

    def entries(self) -> list[bytes]:
        self.watch()
        connector = self._transport.connector
        [raw] = connector.run(
            "read the dead letters",
            lambda: connector.execute([("LRANGE", self._keys[0], 0, -1)]),
        )
        return list(raw)

    def requeue(self, letter_id: str) -> DeadLetter | None:
        transport = self._transport
        entry = next((e for e in self.entries() if _id(e) == letter_id), None)
        if entry is None:
            return None
        letter = letter_of(entry)
        if not letter.is_message:
            raise ValueError(f"dead letter {letter_id} is not a message; nothing to requeue")
        envelope, _ = encode_envelope(letter.message, "", letter.queue)
        step = transport.options.step_of(letter.message.priority)
        keys = [self._keys[0], transport.keys.queue(letter.queue, step)]
        connector = transport.connector
        moved = connector.run(
            f"requeue dead letter {letter_id}",
            lambda: connector.script(REQUEUE, keys, [entry, envelope]),
        )
        return letter if int(moved) else None

    def purge(self, queue: str | None) -> int:
        connector = self._transport.connector
        if queue is None:
            [count, _] = connector.run(
                "purge the dead letters",
                lambda: connector.execute(
                    [("LLEN", self._keys[0]), ("DEL", self._keys[0])], transaction=True
                ),
            )
            return int(count)
        doomed = [e for e in self.entries() if letter_of(e).queue == queue]
        commands = [("LREM", self._keys[0], 1, entry) for entry in doomed]
        if not commands:
            return 0
        replies = connector.run(
            "purge the dead letters", lambda: connector.execute(commands, transaction=True)
        )
        return sum(int(r) for r in replies)


def _id(entry: bytes) -> str:
    return hashlib.sha1(entry, usedforsecurity=False).hexdigest()[:16]


def letter_of(entry: bytes) -> DeadLetter:
    """The dead letter an entry of the list holds (a non-envelope keeps its raw bytes)."""
    data: dict[str, Any] = json.loads(entry.decode("utf-8", "replace"))
    text = str(data.get("envelope") or "")
    if data.get("envelope_encoding") == "base64":
        raw = base64.b64decode(text)
    else:
        raw = text.encode("utf-8")
    common = (str(data.get("queue")), str(data.get("reason")), float(data["at"]))
    try:
        message = decode_envelope(raw).message
    except ValueError:
        message = Message(raw, "application/octet-stream", "binary")
        return DeadLetter(message, *common, id=_id(entry), is_message=False)
    return DeadLetter(message, *common, id=_id(entry))
