-- Put back messages whose lease expired (their consumer died), and, when asked, messages that
-- Celery workers took and left unacknowledged for longer than the visibility timeout.
-- ARGV: now, limit, key prefix, sep, visibility ceiling (now - visibility_timeout),
-- restore foreign (1/0), steps... Returns {messages restored, next lease expiry or ''}.
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
