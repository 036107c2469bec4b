-- Helpers shared by the scripts (prepended to each).
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
