-- Give held messages back. ARGV: mode (front | back | failed | defer | dead), time (defer: not
-- before; dead: now), key prefix, sep, reason (dead), then leases ("<tag>\t<claim>"). A give-back
-- is not a failed delivery, so its claim is not counted toward max_deliveries, except in mode
-- ``failed`` (to the back, like ``back``: the worker process running it died).
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
        if mode == 'defer' then  -- waiting for an ETA is no failed delivery: not counted
          redis.call('ZADD', prefix .. '_celeriac.delayed.' .. queue, at, step .. envelope)
        elseif mode == 'front' then
          redis.call('RPUSH', list_key(prefix, sep, queue, step), envelope)
        else
          redis.call('LPUSH', list_key(prefix, sep, queue, step), envelope)
        end
        local kept, returned = parse_count(count)
        if mode == 'defer' then kept = kept - 1  -- an ETA wait: not counted, not a redelivery
        elseif mode ~= 'failed' then kept, returned = kept - 1, true end
        if kept > 0 or returned then
          redis.call('HSET', KEYS[5], tag, kept .. (returned and 'r' or ''))
        else redis.call('HDEL', KEYS[5], tag) end
      end
    end
    done[#done + 1] = tag
  end
end
forget(done)
return #done
