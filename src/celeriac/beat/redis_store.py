"""The schedule store in Redis, for beats on several machines sharing one Redis.

The same rules as ``celeriac.beat.store.RowStore`` (read that first), written as Lua.
Keys (behind a prefix, ``celeriac-beat:<app main name>:`` by default, so apps can share a
Redis)::

    meta            HASH  fence    the newest fencing token that wrote
                          version  bumped by every edit
    names           SET   every stored entry's name
    entry:<name>    HASH  definition       JSON (absent: the entry is from beat_schedule)
                          enabled          "1" / "0"
                          fingerprint      the definition last_run_at belongs to
                          last_run_at      Unix time, as Python's repr of the float
                          total_run_count  integer
                          run_requested    "1": send once now
                          pending_task_id, pending_since   claimed, not yet confirmed sent

Times are written by Python (``repr``) and only compared as strings in Lua, so no precision
is lost to Lua's number formatting.

Atomicity: every call that writes is one Lua script that checks the fence (leader calls) and
the entry it changes, then writes; ``claim_run`` is the compare-and-set on ``last_run_at``
(or on ``run_requested``) together with the fence check. ``entries`` is one script too, so
it reads a consistent snapshot. Scripts touch ``entry:<name>`` keys they build from the
prefix, which standalone Redis allows (Redis Cluster would not).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from celeriac.beat._redis import RedisConnection
from celeriac.beat.store import Claim, EntryState, ScheduleStore

__all__ = ["RedisScheduleStore"]

# KEYS: meta, names, entry:<name>. ARGV[1]: the name.
_COMMON = """
local function fenced(token)
  local newest = tonumber(redis.call('HGET', KEYS[1], 'fence') or '0')
  if tonumber(token) < newest then return false end
  if tonumber(token) > newest then redis.call('HSET', KEYS[1], 'fence', token) end
  return true
end
local function ensure()
  if redis.call('EXISTS', KEYS[3]) == 0 then
    redis.call('HSET', KEYS[3], 'enabled', '1', 'total_run_count', '0', 'run_requested', '0')
  end
  redis.call('SADD', KEYS[2], ARGV[1])
end
local function bump() redis.call('HINCRBY', KEYS[1], 'version', 1) end
"""

_SCRIPTS = {
    "add": """ensure()  -- ARGV: name, definition, fingerprint, now
redis.call('HSET', KEYS[3], 'definition', ARGV[2], 'fingerprint', ARGV[3], 'last_run_at', ARGV[4])
redis.call('HDEL', KEYS[3], 'pending_task_id', 'pending_since')
bump()""",
    "remove": """local gone = redis.call('DEL', KEYS[3]) + redis.call('SREM', KEYS[2], ARGV[1])
bump()
return gone""",
    "set_enabled": """ensure()  -- ARGV: name, "1"/"0", now
local row = redis.call('HMGET', KEYS[3], 'enabled', 'last_run_at')
if ARGV[2] == '1' and row[1] == '0' and row[2] then
  redis.call('HSET', KEYS[3], 'last_run_at', ARGV[3])
end
redis.call('HSET', KEYS[3], 'enabled', ARGV[2])
bump()""",
    "request_run": """ensure()
redis.call('HSET', KEYS[3], 'run_requested', '1')
bump()""",
    "start_entry": """-- ARGV: name, fingerprint, now, token
if not fenced(ARGV[4]) then return 'deposed' end
local row = redis.call('HMGET', KEYS[3], 'fingerprint', 'last_run_at')
if row[1] == ARGV[2] and row[2] then return 'taken' end
ensure()
redis.call('HSET', KEYS[3], 'fingerprint', ARGV[2], 'last_run_at', ARGV[3])
return 'claimed'""",
    # ARGV: name, token, last_run_at as read ("" = none), run_at, task_id ("" = skip the
    # run), "1" = claim a run-now request instead.
    "claim_run": """if not fenced(ARGV[2]) then return 'deposed' end
if redis.call('EXISTS', KEYS[3]) == 0 then return 'taken' end
local row = redis.call('HMGET', KEYS[3], 'enabled', 'pending_task_id', 'run_requested',
  'last_run_at')
if row[2] or row[1] == '0' then return 'taken' end
if ARGV[6] == '1' then
  if row[3] ~= '1' then return 'taken' end
  redis.call('HSET', KEYS[3], 'run_requested', '0')
else
  if (row[4] or '') ~= ARGV[3] then return 'taken' end
  redis.call('HSET', KEYS[3], 'last_run_at', ARGV[4])
end
if ARGV[5] ~= '' then
  redis.call('HINCRBY', KEYS[3], 'total_run_count', 1)
  redis.call('HSET', KEYS[3], 'pending_task_id', ARGV[5], 'pending_since', ARGV[4])
end
return 'claimed'""",
    "retake_pending": """-- ARGV: name, token, since, now
if not fenced(ARGV[2]) then return 'deposed' end
local row = redis.call('HMGET', KEYS[3], 'pending_task_id', 'pending_since')
if not row[1] or row[2] ~= ARGV[3] then return 'taken' end
redis.call('HSET', KEYS[3], 'pending_since', ARGV[4])
return 'claimed'""",
    "confirm_sent": """if redis.call('HGET', KEYS[3], 'pending_task_id') == ARGV[2] then
  redis.call('HDEL', KEYS[3], 'pending_task_id', 'pending_since')
end""",
}

# KEYS: names. ARGV[1]: the entry key prefix.
_ENTRIES = """
local out = {}
for _, name in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  out[#out + 1] = name
  out[#out + 1] = redis.call('HGETALL', ARGV[1] .. name)
end
return out
"""


def _time(value: float | None) -> str:
    return "" if value is None else repr(float(value))


def _state(name: str, fields: Mapping[str, str]) -> EntryState:
    def number(key: str) -> float | None:
        return float(fields[key]) if fields.get(key) else None

    definition = fields.get("definition")
    return EntryState(
        name=name,
        definition=json.loads(definition) if definition is not None else None,
        enabled=fields.get("enabled", "1") == "1",
        fingerprint=fields.get("fingerprint"),
        last_run_at=number("last_run_at"),
        total_run_count=int(fields.get("total_run_count") or 0),
        run_requested=fields.get("run_requested") == "1",
        pending_task_id=fields.get("pending_task_id"),
        pending_since=number("pending_since"),
    )


class RedisScheduleStore(ScheduleStore):
    """A store in Redis shared by the beats of any number of machines."""

    def __init__(self, url: str, *, prefix: str) -> None:
        self.prefix = prefix
        self._redis = RedisConnection(url, what="beat schedule store")
        self._scripts = {name: self._redis.script(_COMMON + s) for name, s in _SCRIPTS.items()}
        self._entries = self._redis.script(_ENTRIES)

    def _run(self, script: str, action: str, name: str, *args: object) -> Any:
        keys = [f"{self.prefix}meta", f"{self.prefix}names", f"{self.prefix}entry:{name}"]
        return self._scripts[script](action, keys, [name, *args])

    def _claim(self, script: str, action: str, name: str, *args: object) -> Claim:
        answer = self._run(script, action, name, *args)
        return Claim(answer.decode() if isinstance(answer, bytes) else answer)

    def entries(self) -> dict[str, EntryState]:
        flat = self._entries("read the schedule", [f"{self.prefix}names"], [f"{self.prefix}entry:"])
        states = {}
        for raw_name, raw_fields in zip(flat[::2], flat[1::2], strict=True):
            texts = [item.decode() for item in raw_fields]
            name = raw_name.decode()
            states[name] = _state(name, dict(zip(texts[::2], texts[1::2], strict=True)))
        return states

    def version(self) -> int:
        [version] = self._redis.execute(
            "read the schedule's version", ("HGET", f"{self.prefix}meta", "version")
        )
        return int(version or 0)

    def add(
        self, name: str, definition: Mapping[str, Any], *, fingerprint: str, now: float
    ) -> None:
        text = json.dumps(dict(definition), default=repr)
        self._run("add", f"add entry {name!r}", name, text, fingerprint, _time(now))

    def remove(self, name: str) -> bool:
        return bool(self._run("remove", f"remove entry {name!r}", name))

    def set_enabled(self, name: str, enabled: bool, *, now: float) -> None:
        flag = "1" if enabled else "0"
        self._run("set_enabled", f"enable/disable entry {name!r}", name, flag, _time(now))

    def request_run(self, name: str) -> None:
        self._run("request_run", f"request a run of {name!r}", name)

    def start_entry(self, name: str, fingerprint: str, now: float, *, token: int) -> Claim:
        action = f"start entry {name!r}"
        return self._claim("start_entry", action, name, fingerprint, _time(now), str(token))

    def claim_run(
        self,
        name: str,
        *,
        token: int,
        last_run_at: float | None,
        run_at: float,
        task_id: str | None,
        requested: bool = False,
    ) -> Claim:
        return self._claim(
            "claim_run",
            f"claim a run of {name!r}",
            name,
            str(token),
            _time(last_run_at),
            _time(run_at),
            task_id or "",
            "1" if requested else "0",
        )

    def retake_pending(self, name: str, *, token: int, since: float, now: float) -> Claim:
        action = f"retake the pending send of {name!r}"
        return self._claim("retake_pending", action, name, str(token), _time(since), _time(now))

    def confirm_sent(self, name: str, task_id: str) -> None:
        self._run("confirm_sent", f"confirm the send of {name!r}", name, task_id)

    def close(self) -> None:
        self._redis.close()
