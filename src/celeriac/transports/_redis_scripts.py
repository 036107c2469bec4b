"""The Lua scripts of the Redis broker: each runs atomically inside Redis.

The key layout they work on is drawn in ``celeriac.transports.redis``. Every consumer script
takes the same first six KEYS::

    KEYS[1] unacked        HASH  tag -> '[<envelope>, "", <queue as JSON>]'   (kombu's)
    KEYS[2] unacked_index  ZSET  tag -> delivery or last renewal time          (kombu's)
    KEYS[3] leases         ZSET  "<tag>\\t<claim>" -> lease expiry
    KEYS[4] claims         HASH  tag -> "<count>\\t<envelope length>\\t<step>\\t<queue>"
    KEYS[5] deliveries     HASH  tag -> count, kept while a message waits again
    KEYS[6] dead letters   LIST  JSON {"queue", "reason", "at", "envelope_encoding",
                                 "envelope"}; KEYS[6] .. ".limits" HASH max_entries,
                                 dropped, unseen; KEYS[6] .. ".unlogged" LIST the last 10
                                 {"queue", "reason"} no caller logs (``_redis_dead_letters``)

A claim names one delivery to one consumer (``<consumer id>.<sequence>``). Acting on a
delivery starts with ``ZREM leases "<tag>\\t<claim>"``: it removes something only while that
claim still holds the message, so a consumer whose lease lapsed cannot touch the message's next
delivery, and the check is a write, which client-side tracking ignores (see
``_redis_consumer``). Times are Unix seconds from the caller's clock, passed as strings so no
precision is lost.

A count is the number of deliveries that count toward ``max_deliveries`` (those whose lease
lapsed or whose worker process died, and the current one), with an ``r`` suffix once the
message was given back (requeued, deferred, returned at a consumer's close), which is not
counted but makes the next delivery a redelivery: ``"3"``, ``"1r"``.
"""

from __future__ import annotations

__all__ = ["ACK", "GIVE_BACK", "RECOVER", "RENEW", "TAKE"]

# Helpers shared by the scripts (prepended to each).
_COMMON = r"""
local function list_key(prefix, sep, queue, step)
  if step == '0' then return prefix .. queue end
  return prefix .. queue .. sep .. step
end
local B64 = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/'
local function base64(s)
  local out = {}
  for i = 1, #s, 3 do
    local a, b, c = string.byte(s, i, i + 2)
    local n = a * 65536 + (b or 0) * 256 + (c or 0)
    local quad = {}
    for j = 1, 4 do
      local k = math.floor(n / 2 ^ (6 * (4 - j))) % 64
      quad[j] = string.sub(B64, k + 1, k + 1)
    end
    if not b then quad[3] = '=' end
    if not c then quad[4] = '=' end
    out[#out + 1] = table.concat(quad)
  end
  return table.concat(out)
end
local caller_logs = false  -- GIVE_BACK sets it: its caller logs the letters it sets aside
-- The dead-letter entry for an envelope, after making room for it (the limits hash beside
-- the list holds max_entries and counts what was dropped and what no caller has logged).
-- An envelope with bytes past ASCII is kept base64, so the entry is always valid JSON.
local function dead_entry(queue, reason, at, envelope)
  local limits = KEYS[6] .. '.limits'
  local cap = tonumber(redis.call('HGET', limits, 'max_entries'))
  if cap then
    local extra = redis.call('LLEN', KEYS[6]) - cap + 1
    if extra > 0 then
      redis.call('LTRIM', KEYS[6], extra, -1)
      redis.call('HINCRBY', limits, 'dropped', extra)
    end
  end
  local about = '{"queue": ' .. cjson.encode(queue) .. ', "reason": ' .. cjson.encode(reason)
  if not caller_logs then
    redis.call('HINCRBY', limits, 'unseen', 1)
    redis.call('RPUSH', KEYS[6] .. '.unlogged', about .. '}')
    redis.call('LTRIM', KEYS[6] .. '.unlogged', -10, -1)
  end
  local encoding = 'utf-8'
  if string.find(envelope, '[\128-\255]') then envelope, encoding = base64(envelope), 'base64' end
  return about .. ', "at": ' .. at .. ', "envelope_encoding": "' .. encoding
    .. '", "envelope": ' .. cjson.encode(envelope) .. '}'
end
local function split_info(value)
  local count, len, step, queue = string.match(value, '^([^\t]*)\t([^\t]*)\t([^\t]*)\t(.*)$')
  return count, tonumber(len), step, queue
end
local function parse_count(value)  -- '3' or '1r' -> 3, false or 1, true
  if not value then return 0, false end
  return tonumber(string.match(value, '^%d+')) or 0, string.sub(value, -1) == 'r'
end
local function tag_of(member)
  return string.match(member, '^(.*)\t[^\t]*$')
end
local function forget(tags)
  if #tags == 0 then return end
  redis.call('HDEL', KEYS[1], unpack(tags))
  redis.call('ZREM', KEYS[2], unpack(tags))
  redis.call('HDEL', KEYS[4], unpack(tags))
end
local function ack(first, last)
  local done = {}
  for i = first, last do
    if redis.call('ZREM', KEYS[3], ARGV[i]) == 1 then done[#done + 1] = tag_of(ARGV[i]) end
  end
  forget(done)
  if #done > 0 then redis.call('HDEL', KEYS[5], unpack(done)) end
  return #done
end
"""

# Acknowledge (ARGV first), promote due delayed messages, then lease up to ``wanted`` messages,
# best priority step first. KEYS[7 .. 6+nq]: each queue's delayed ZSET; then the list of step s
# of queue q at KEYS[6 + nq + (s-1)*nq + q]. ARGV: now, lease expiry, wanted, claim prefix,
# first sequence, max deliveries, interleave (1: one message per queue in turn; 0: queues in
# order), nq, ns, track (1: when nothing was taken, read the lists so Redis tracks them),
# number of acks, steps..., queues..., leases to acknowledge ("<tag>\t<claim>")...
# Returns {next due time or '', then per delivery: queue index, envelope, count, claim, tag}.
TAKE = (
    _COMMON
    + r"""
local now, expires, wanted = ARGV[1], ARGV[2], tonumber(ARGV[3])
local claim_prefix, seq, max_deliveries = ARGV[4], tonumber(ARGV[5]), tonumber(ARGV[6])
local interleave, nq, ns = ARGV[7] == '1', tonumber(ARGV[8]), tonumber(ARGV[9])
local track, nacks = ARGV[10] == '1', tonumber(ARGV[11])
local steps, names = {}, {}
for s = 1, ns do steps[s] = ARGV[11 + s] end
for q = 1, nq do names[q] = ARGV[11 + ns + q] end
if nacks > 0 then ack(12 + ns + nq, 11 + ns + nq + nacks) end
local function lkey(s, q) return KEYS[6 + nq + (s - 1) * nq + q] end
local function step_index(digit)
  local found = 1
  for s = 1, ns do if tonumber(steps[s]) <= tonumber(digit) then found = s end end
  return found
end
local function delivery_tag(raw)
  local marker = '"delivery_tag": "'
  local at = string.find(raw, marker, 1, true)
  if at and not string.find(raw, marker, at + 1, true) then
    local tag = string.match(raw, '^([^"\\]+)"', at + #marker)
    if tag then return tag end
  end
  local ok, env = pcall(cjson.decode, raw)
  local tag = ok and type(env) == 'table' and type(env.properties) == 'table'
    and env.properties.delivery_tag
  if type(tag) == 'string' and tag ~= '' and not string.find(tag, '\t', 1, true) then
    return tag
  end
  return nil
end
for q = 1, nq do
  local due = redis.call('ZRANGE', KEYS[6 + q], '-inf', now, 'BYSCORE', 'LIMIT', 0, 500)
  if #due > 0 then
    redis.call('ZREM', KEYS[6 + q], unpack(due))
    for i = #due, 1, -1 do  -- latest first, so the earliest ends up next in line
      local member = due[i]
      redis.call('RPUSH', lkey(step_index(string.sub(member, 1, 1)), q), string.sub(member, 2))
    end
  end
end
local taken = {}
for s = 1, ns do
  if #taken >= wanted then break end
  if interleave and nq > 1 then
    local live = {}
    for q = 1, nq do live[q] = q end
    while #taken < wanted and #live > 0 do
      local still = {}
      for _, q in ipairs(live) do
        if #taken < wanted then
          local m = redis.call('RPOP', lkey(s, q))
          if m then taken[#taken + 1] = {q, s, m}; still[#still + 1] = q end
        end
      end
      live = still
    end
  else
    for q = 1, nq do
      local need = wanted - #taken
      if need <= 0 then break end
      local got = redis.call('RPOP', lkey(s, q), need)
      if got then for _, m in ipairs(got) do taken[#taken + 1] = {q, s, m} end end
    end
  end
end
local out = {''}
if #taken == 0 then
  if track then
    local keys = {}
    for i = 7 + nq, 6 + nq + ns * nq do keys[#keys + 1] = KEYS[i] end
    redis.call('EXISTS', unpack(keys))
  end
  local next_due = nil
  for q = 1, nq do
    local first = redis.call('ZRANGE', KEYS[6 + q], 0, 0, 'WITHSCORES')
    if first[2] and (next_due == nil or tonumber(first[2]) < tonumber(next_due)) then
      next_due = first[2]
    end
  end
  out[1] = next_due or ''
  return out
end
local tags = {}
for _, t in ipairs(taken) do
  t[4] = delivery_tag(t[3])
  if t[4] then tags[#tags + 1] = t[4] end
end
local counts = {}
if #tags > 0 then counts = redis.call('HMGET', KEYS[5], unpack(tags)) end
local unacked, index, leases, claims, poisoned = {}, {}, {}, {}, {}
local j = 0
for _, t in ipairs(taken) do
  local q, s, raw, tag = t[1], t[2], t[3], t[4]
  if not tag then
    redis.call('RPUSH', KEYS[6], dead_entry(names[q],
      'not a kombu message envelope (JSON with properties.delivery_tag)', now, raw))
  else
    j = j + 1
    local count, returned = parse_count(counts[j])
    count = count + 1
    if count > max_deliveries then
      poisoned[#poisoned + 1] = tag
      redis.call('RPUSH', KEYS[6], dead_entry(names[q], 'delivered ' .. (count - 1)
        .. ' times without being acknowledged (its worker probably died each time)', now, raw))
    else
      seq = seq + 1
      local claim = claim_prefix .. seq
      unacked[#unacked + 1] = tag
      unacked[#unacked + 1] = '[' .. raw .. ', "", ' .. cjson.encode(names[q]) .. ']'
      index[#index + 1] = now; index[#index + 1] = tag
      leases[#leases + 1] = expires; leases[#leases + 1] = tag .. '\t' .. claim
      if returned then count = count .. 'r' end
      claims[#claims + 1] = tag
      claims[#claims + 1] = table.concat({count, #raw, steps[s], names[q]}, '\t')
      out[#out + 1] = q; out[#out + 1] = raw; out[#out + 1] = count; out[#out + 1] = claim
      out[#out + 1] = tag
    end
  end
end
if #poisoned > 0 then redis.call('HDEL', KEYS[5], unpack(poisoned)) end
if #unacked > 0 then
  redis.call('HSET', KEYS[1], unpack(unacked))
  redis.call('ZADD', KEYS[2], unpack(index))
  redis.call('ZADD', KEYS[3], unpack(leases))
  redis.call('HSET', KEYS[4], unpack(claims))
end
return out
"""
)

# ARGV: leases to acknowledge ("<tag>\t<claim>"). Returns how many were still held.
ACK = _COMMON + "\nreturn ack(1, #ARGV)\n"

# ARGV: now, lease expiry, then leases to renew ("<tag>\t<claim>").
RENEW = (
    _COMMON
    + r"""
local n = 0
for i = 3, #ARGV do
  if redis.call('ZSCORE', KEYS[3], ARGV[i]) then
    redis.call('ZADD', KEYS[3], ARGV[2], ARGV[i])
    redis.call('ZADD', KEYS[2], 'XX', ARGV[1], tag_of(ARGV[i]))
    n = n + 1
  end
end
return n
"""
)

# Give held messages back. ARGV: mode (front | back | failed | defer | dead), time (defer: not
# before; dead: now), key prefix, sep, reason (dead), then leases ("<tag>\t<claim>"). A give-back
# is not a failed delivery, so its claim is not counted toward max_deliveries, except in mode
# ``failed`` (to the back, like ``back``: the worker process running it died).
GIVE_BACK = (
    _COMMON
    + r"""
local mode, at, prefix, sep, reason = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]
caller_logs = true
local done = {}
local first, last, step = 6, #ARGV, 1
if mode == 'front' then first, last, step = #ARGV, 6, -1 end  -- the first taken ends up next
for i = first, last, step do
  if redis.call('ZREM', KEYS[3], ARGV[i]) == 1 then
    local tag = tag_of(ARGV[i])
    local info = redis.call('HGET', KEYS[4], tag)
    local envelope = info and redis.call('HGET', KEYS[1], tag)
    if envelope then
      local count, len, step, queue = split_info(info)
      envelope = string.sub(envelope, 2, 1 + len)
      if mode == 'dead' then
        redis.call('RPUSH', KEYS[6], dead_entry(queue, reason, at, envelope))
        redis.call('HDEL', KEYS[5], tag)
      else
        if mode == 'defer' then
          redis.call('ZADD', prefix .. '_celeriac.delayed.' .. queue, at, step .. envelope)
        elseif mode == 'front' then
          redis.call('RPUSH', list_key(prefix, sep, queue, step), envelope)
        else
          redis.call('LPUSH', list_key(prefix, sep, queue, step), envelope)
        end
        local kept, returned = parse_count(count)
        if mode ~= 'failed' then kept, returned = kept - 1, true end
        redis.call('HSET', KEYS[5], tag, kept .. (returned and 'r' or ''))
      end
    end
    done[#done + 1] = tag
  end
end
forget(done)
return #done
"""
)

# Put back messages whose lease expired (their consumer died), and, when asked, messages that
# Celery workers took and left unacknowledged for longer than the visibility timeout.
# ARGV: now, limit, key prefix, sep, visibility ceiling (now - visibility_timeout),
# restore foreign (1/0), steps... Returns {messages restored, next lease expiry or ''}.
RECOVER = (
    _COMMON
    + r"""
local now, limit, prefix, sep, ceiling = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local steps = {}
for i = 7, #ARGV do steps[#steps + 1] = ARGV[i] end
local restored, gone = 0, {}
for _, member in ipairs(redis.call('ZRANGE', KEYS[3], '-inf', now, 'BYSCORE', 'LIMIT', 0, limit)) do
  redis.call('ZREM', KEYS[3], member)
  local tag = tag_of(member)
  local info = redis.call('HGET', KEYS[4], tag)
  local value = redis.call('HGET', KEYS[1], tag)
  if info and value then
    local count, len, step, queue = split_info(info)
    redis.call('RPUSH', list_key(prefix, sep, queue, step), string.sub(value, 2, 1 + len))
    redis.call('HSET', KEYS[5], tag, count)
    restored = restored + 1
  end
  gone[#gone + 1] = tag
end
forget(gone)
if ARGV[6] == '1' then
  local stale = redis.call('ZRANGE', KEYS[2], '-inf', ceiling, 'BYSCORE', 'LIMIT', 0, limit)
  for _, tag in ipairs(stale) do
    if redis.call('HEXISTS', KEYS[4], tag) == 0 then
      local value = redis.call('HGET', KEYS[1], tag)
      local ok, triple = pcall(cjson.decode, value or '')
      if not value then
        redis.call('ZREM', KEYS[2], tag)
      elseif ok and type(triple) == 'table' and triple[2] == '' and type(triple[3]) == 'string'
          and type(triple[1]) == 'table' then
        local queue = triple[3]
        local priority = tonumber(type(triple[1].properties) == 'table'
          and triple[1].properties.priority) or 0
        local step = steps[1]
        for _, s in ipairs(steps) do if tonumber(s) <= priority then step = s end end
        local suffix = ', "", "' .. queue .. '"]'
        local envelope
        if string.find(queue, '^[%w%.%-_:@]+$') and string.sub(value, -#suffix) == suffix then
          envelope = string.sub(value, 2, #value - #suffix)
        else
          envelope = cjson.encode(triple[1])
        end
        redis.call('RPUSH', list_key(prefix, sep, queue, step), envelope)
        redis.call('HDEL', KEYS[1], tag)
        redis.call('ZREM', KEYS[2], tag)
        restored = restored + 1
      end
    end
  end
end
local first = redis.call('ZRANGE', KEYS[3], 0, 0, 'WITHSCORES')
return {restored, first[2] or ''}
"""
)
