-- Acknowledge (ARGV first), promote due delayed messages, then lease up to ``wanted`` messages,
-- best priority step first. KEYS[7 .. 6+nq]: each queue's delayed ZSET; then the list of step s
-- of queue q at KEYS[6 + nq + (s-1)*nq + q]. ARGV: now, lease expiry, wanted, claim prefix,
-- first sequence, max deliveries, interleave (1: one message per queue in turn; 0: queues in
-- order), nq, ns, track (1: when nothing was taken, read the lists so Redis tracks them),
-- number of acks, steps..., queues..., leases to acknowledge ("<tag>\t<claim>")...
-- Returns {next due time or '', then per delivery: queue index, envelope, count, claim, tag}.
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
