"""The Lua scripts of the Redis broker: each runs atomically inside Redis.

The scripts are the ``lua/*.lua`` files beside this module (package data, so an installed
wheel has them), read once at import with ``importlib.resources``; ``lua/common.lua`` holds
the helpers every script starts with, and each script file opens with what its KEYS and ARGV
are and what it returns.

The key layout they work on is drawn in ``celeriac.transports.redis.transport``. Every
consumer script takes the same first six KEYS::

    KEYS[1] unacked        HASH  tag -> '[<envelope>, "", <queue as JSON>]'   (kombu's)
    KEYS[2] unacked_index  ZSET  tag -> delivery or last renewal time          (kombu's)
    KEYS[3] leases         ZSET  "<tag>\\t<claim>" -> lease expiry
    KEYS[4] claims         HASH  tag -> "<count>\\t<envelope length>\\t<step>\\t<queue>"
    KEYS[5] deliveries     HASH  tag -> count, kept while a message waits again
    KEYS[6] dead letters   LIST  JSON {"queue", "reason", "at", "envelope_encoding",
                                 "envelope"}; KEYS[6] .. ".limits" HASH max_entries,
                                 dropped, unseen; KEYS[6] .. ".unlogged" LIST the last 10
                                 {"queue", "reason"} no caller logs (``dead_letters``)

A claim names one delivery to one consumer (``<consumer id>.<sequence>``). Acting on a
delivery starts with ``ZREM leases "<tag>\\t<claim>"``: it removes something only while that
claim still holds the message, so a consumer whose lease lapsed cannot touch the message's next
delivery, and the check is a write, which client-side tracking ignores (see
``consumer``). Times are Unix seconds from the caller's clock, passed as strings so no
precision is lost.

A count is the number of deliveries that count toward ``max_deliveries`` (those whose lease
lapsed or whose worker process died, and the current one), with an ``r`` suffix once the
message was given back (requeued, deferred, returned at a consumer's close), which is not
counted but makes the next delivery a redelivery: ``"3"``, ``"1r"``.
"""

from __future__ import annotations

from importlib import resources

__all__ = ["ACK", "GIVE_BACK", "RECOVER", "RENEW", "TAKE"]


def _load(name: str) -> str:
    """The text of ``lua/<name>.lua``."""
    source = resources.files("celeriac.transports.redis") / "lua" / f"{name}.lua"
    return source.read_text(encoding="utf-8")


# Each script is the shared helpers followed by its own body.
_COMMON = _load("common")
TAKE = _COMMON + _load("take")
ACK = _COMMON + _load("ack")
RENEW = _COMMON + _load("renew")
GIVE_BACK = _COMMON + _load("give_back")
RECOVER = _COMMON + _load("recover")
