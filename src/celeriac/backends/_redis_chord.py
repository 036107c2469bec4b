"""The chord join on Redis, in Celery 5.7's keys, so Celery and Celeriac workers share chords.

``RedisChordJoin`` implements ``celeriac.backends.chord.ChordJoin`` for ``RedisBackend`` (which
hands one out from ``chord_join()``). Keys, under the backend's group prefix
(``[global_keyprefix]celery-taskset-meta-``) and the chord's group id ``<gid>``::

    <gid>.s   STRING  the header's size; SET with the chord's expiry by the client (prepare)
    <gid>.t   STRING  members added later (``add_member``: Task.add_to_chord INCRs it)
    <gid>.j   ZSET    one entry per member that ended: JSON-or-other ``[1, tid, state,
                      result]`` in the result serializer, scored by its ``group_index``
                      (``+inf`` when unknown), so ZRANGE gives header order
    <gid>.d   SET     ``"<tid>:<group_index>"`` of the members recorded, to count each once
    <gid>.c   STRING  the claim on sending the body: a token (SET NX EX), then ``done``
                      once the body went out, so late duplicates change nothing. Celery's
                      token is 32 hex digits; ours is 32 hex digits, a space and the
                      claiming part, ``"<hex> <tid>:<group_index>"``

Atomic steps: ``prepare`` is one MULTI (DEL ``.c``, SET ``.s``). ``member_done`` is one Lua
script (``_MEMBER_DONE``): stop at ``done``; record the entry unless ``.d`` has it; refresh
the expiries; when ``ZCOUNT .j`` equals ``.s`` + ``.t``, claim ``.c`` with NX and, if the
claim is ours, return ``ZRANGE .j 0 -1``. So exactly one report, of any worker, Celery's
included (its 5.7 script takes the same claim), gets the entries. One more case returns them:
``.c`` holds a token of ours naming the very part that reports now. That part claimed, and
its worker died before the body went out (``finish`` never ran): the broker delivered the
member again (``acks_late``), so the script takes the claim over with a new token and this
report sends the body (``celeriac.canvas.join`` says what that costs). ``finish`` is one
script (``_FINISH``): if ``.c`` still holds our token, DEL ``.j .t .s .d`` and SET ``.c``
``done`` (unconditionally when this join did not make the claim). A claim also expires after
``claim_seconds``, so a report after that may claim again: the only recovery when a Celery
worker dies holding the claim, whose token names no part (Celery 5.7's own rule). A member
that ends before ``.s`` exists is recorded all the same: Celery's client sets the size just
before it sends the header's last member, whose report then completes the chord.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from celeriac._redis.connection import RedisConnector

if TYPE_CHECKING:
    from celeriac.backends.chord import ChordPart

__all__ = ["RedisChordJoin"]

logger = logging.getLogger("celeriac.canvas")

# KEYS: .j .t .s .d .c   ARGV: tid, entry, score, ttl ms (0: none), claim s, token
# (token: 32 hex digits, a space, then "<tid>:<score>", the part that claims)
# Returns {claimed (1/0; -1: done already), entries recorded, total (-1: size unknown), entries}
_MEMBER_DONE = """
local jkey, tkey, skey, dkey, ckey = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local tid, entry, score = ARGV[1], ARGV[2], ARGV[3]
local ttl_ms, claim_seconds, token = tonumber(ARGV[4]), tonumber(ARGV[5]), ARGV[6]
local claim = redis.call('GET', ckey)
if claim == 'done' then
    return {-1, 0, -1, {}}
end
local seen = tid .. ':' .. score
if redis.call('SISMEMBER', dkey, seen) == 0 then
    redis.call('ZADD', jkey, score, entry)
    redis.call('SADD', dkey, seen)
end
if ttl_ms > 0 then
    for _, key in ipairs({jkey, tkey, skey, dkey}) do
        redis.call('PEXPIRE', key, ttl_ms)
    end
end
local count = redis.call('ZCOUNT', jkey, '-inf', '+inf')
local size = redis.call('GET', skey)
if not size then
    return {0, count, -1, {}}
end
local total = tonumber(size) + tonumber(redis.call('GET', tkey) or 0)
if count ~= total then
    return {0, count, total, {}}
end
-- Our own token already there: this is a retry of a call whose reply was lost.
if claim == token or redis.call('SET', ckey, token, 'NX', 'EX', claim_seconds) then
    return {1, count, total, redis.call('ZRANGE', jkey, 0, -1)}
end
-- Claimed by an earlier run of this very part, and the body not sent: that run's worker died
-- in between, and the broker delivered the member again. Take the claim over.
if claim and string.sub(claim, 34) == seen then
    redis.call('SET', ckey, token, 'EX', claim_seconds)
    return {1, count, total, redis.call('ZRANGE', jkey, 0, -1)}
end
return {0, count, total, {}}
"""

# KEYS: .c .j .t .s .d   ARGV: token ('' = whoever holds the claim), done marker seconds
_FINISH = """
local ckey = KEYS[1]
local token, done_seconds = ARGV[1], tonumber(ARGV[2])
if token ~= '' and redis.call('GET', ckey) ~= token then
    return 0
end
redis.call('DEL', KEYS[2], KEYS[3], KEYS[4], KEYS[5])
redis.call('SET', ckey, 'done', 'EX', done_seconds)
return 1
"""


class RedisChordJoin:
    """Celery 5.7's native chord join on Redis (module docstring).

    ``connector`` is the result backend's ``RedisConnector`` (errors come out as its
    ``BackendError``); ``group_keyprefix`` its group prefix, global key prefix included.
    """

    def __init__(
        self, connector: RedisConnector, group_keyprefix: str, *, claim_seconds: int = 60
    ) -> None:
        self._connector = connector
        self._prefix = group_keyprefix
        self._claim_seconds = max(1, int(claim_seconds))
        # The done marker outlives any claim (Celery keeps it at least 300 s).
        self._done_seconds = max(2 * self._claim_seconds, 300)
        self._tokens: dict[str, str] = {}  # group id -> the claim token this join holds
        self._lock = threading.Lock()

    def _keys(self, group_id: str, *suffixes: str) -> list[str]:
        return [f"{self._prefix}{group_id}{suffix}" for suffix in suffixes]

    def prepare(self, group_id: str, member_ids: Sequence[str], *, ttl: float | None) -> None:
        claim, size = self._keys(group_id, ".c", ".s")
        write: tuple[Any, ...] = ("SET", size, len(member_ids))
        if ttl:
            write += ("PX", max(1, int(ttl * 1000)))
        connector = self._connector
        commands: list[tuple[Any, ...]] = [("DEL", claim), write]  # a re-run of a frozen chord
        connector.run(
            f"record the size of chord {group_id}",
            lambda: connector.execute(commands, transaction=True),
        )

    def add_member(self, group_id: str, task_id: str, *, ttl: float | None) -> None:
        """``Task.add_to_chord``: one more member to wait for (INCR ``.t``, as Celery does)."""
        (added,) = self._keys(group_id, ".t")
        commands: list[tuple[Any, ...]] = [("INCR", added)]
        if ttl:
            commands.append(("PEXPIRE", added, max(1, int(ttl * 1000))))
        connector = self._connector
        connector.run(
            f"add a member to chord {group_id}",
            lambda: connector.execute(commands, transaction=True),
        )

    def member_done(self, part: ChordPart, *, ttl: float | None) -> list[bytes] | None:
        score = "+inf" if part.group_index is None else str(int(part.group_index))
        token = f"{uuid.uuid4().hex} {part.task_id}:{score}"  # the Lua script reads the part
        keys = self._keys(part.group_id, ".j", ".t", ".s", ".d", ".c")
        ttl_ms = max(1, int(ttl * 1000)) if ttl else 0
        args = [part.task_id, part.entry, score, ttl_ms, self._claim_seconds, token]
        connector = self._connector
        reply = connector.run(
            f"join member {part.task_id} of chord {part.group_id}",
            lambda: connector.script(_MEMBER_DONE, keys, args),
        )
        claimed, count, total, entries = reply
        if int(total) < 0 and int(claimed) == 0:
            # Usual with a Celery client: it records the size just before it sends the last
            # member, so earlier members may end first; the last one completes the chord.
            logger.debug(
                "Chord %s: %s recorded, no size yet (%s)", part.group_id, part.task_id, keys[2]
            )
            return None
        if int(claimed) != 1:
            return None
        with self._lock:
            self._tokens[part.group_id] = token
        logger.debug("Chord %s: %s of %s members in, body claimed", part.group_id, count, total)
        return [bytes(entry) for entry in entries]

    def finish(self, group_id: str) -> None:
        with self._lock:
            token = self._tokens.pop(group_id, "")
        keys = self._keys(group_id, ".c", ".j", ".t", ".s", ".d")
        connector = self._connector
        dropped = connector.run(
            f"drop the join state of chord {group_id}",
            lambda: connector.script(_FINISH, keys, [token, self._done_seconds]),
        )
        if not int(dropped):
            logger.warning(
                "Chord %s: the claim expired before its body was sent; its join state is "
                "left to expire",
                group_id,
            )
