"""The leader lease in Redis, for beats on several machines sharing one Redis.

Keys (behind the store's prefix, ``celeriac-beat:<app main name>:`` by default)::

    lease:<name>          HASH    holder      the leader's id (host:pid:random)
                                  token       the fencing token of this term
                                  expires_at  the leader's clock + ttl (informative only)
                          PEXPIRE ttl: Redis drops the key when the lease runs out
    lease:<name>:token    STRING  the newest fencing token ever handed out (INCR; no expiry)

Redis's own clock decides expiry (the key's PEXPIRE), so beats on machines whose clocks
disagree still agree on who leads; ``expires_at`` only reports the leader's view.

Atomicity: each call is one Lua script. ``acquire`` extends the lease when the holder already
has it, takes it when the key is gone (the Lua form of SET NX PX, with the token from INCR on
the counter), and refuses otherwise; ``renew`` is compare-and-extend (holder and token) and
``release`` compare-and-delete, so a replaced leader can neither extend nor free its
successor's lease.
"""

from __future__ import annotations

from celeriac._time import Clock, system_clock
from celeriac.beat._redis import RedisConnection
from celeriac.beat.lease import DEFAULT_LEASE_TTL, LeaderLease, LeaseState

__all__ = ["RedisLease"]

_ACQUIRE = """
local current = redis.call('HMGET', KEYS[1], 'holder', 'token')
if current[1] == ARGV[1] then
  redis.call('HSET', KEYS[1], 'expires_at', ARGV[3])
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return tonumber(current[2])
end
if current[1] then return false end
local token = redis.call('INCR', KEYS[2])
redis.call('HSET', KEYS[1], 'holder', ARGV[1], 'token', token, 'expires_at', ARGV[3])
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return token
"""

_RENEW = """
local current = redis.call('HMGET', KEYS[1], 'holder', 'token')
if current[1] ~= ARGV[1] or current[2] ~= ARGV[2] then return 0 end
redis.call('HSET', KEYS[1], 'expires_at', ARGV[4])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return 1
"""

_RELEASE = """
local current = redis.call('HMGET', KEYS[1], 'holder', 'token')
if current[1] == ARGV[1] and current[2] == ARGV[2] then redis.call('DEL', KEYS[1]) end
return 0
"""


class RedisLease(LeaderLease):
    """A lease in Redis shared by the beats of any number of machines."""

    def __init__(
        self,
        url: str,
        *,
        prefix: str,
        name: str = "beat",
        ttl: float = DEFAULT_LEASE_TTL,
        clock: Clock = system_clock,
    ) -> None:
        super().__init__(ttl=ttl, clock=clock)
        self.name = name
        self.prefix = prefix
        self._redis = RedisConnection(url, what="beat leader lease")
        self._keys = [f"{prefix}lease:{name}", f"{prefix}lease:{name}:token"]
        self._acquire = self._redis.script(_ACQUIRE)
        self._renew = self._redis.script(_RENEW)
        self._release = self._redis.script(_RELEASE)

    @property
    def _ttl_ms(self) -> int:
        return max(1, round(self.ttl * 1000))

    def acquire(self, holder: str) -> int | None:
        expires_at = repr(self.clock.time() + self.ttl)
        action = "take the leader lease"
        token = self._acquire(action, self._keys, [holder, self._ttl_ms, expires_at])
        return None if token is None else int(token)

    def renew(self, holder: str, token: int) -> bool:
        expires_at = repr(self.clock.time() + self.ttl)
        action = "renew the leader lease"
        done = self._renew(action, self._keys, [holder, str(token), self._ttl_ms, expires_at])
        return bool(done)

    def release(self, holder: str, token: int) -> None:
        self._release("release the leader lease", self._keys, [holder, str(token)])

    def current(self) -> LeaseState | None:
        (holder, token, expires_at), newest = self._redis.execute(
            "read the leader lease",
            ("HMGET", self._keys[0], "holder", "token", "expires_at"),
            ("GET", self._keys[1]),
            transaction=True,
        )
        if holder is not None and token is not None:
            return LeaseState(holder.decode(), int(token), float(expires_at or 0.0))
        if newest is not None:
            return LeaseState(None, int(newest), 0.0)  # released or expired
        return None

    def close(self) -> None:
        self._redis.close()
