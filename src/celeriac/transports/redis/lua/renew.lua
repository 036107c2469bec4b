-- ARGV: now, lease expiry, then leases to renew ("<tag>\t<claim>").
local n = 0
for i = 3, #ARGV do
  if redis.call('ZSCORE', KEYS[3], ARGV[i]) then
    redis.call('ZADD', KEYS[3], ARGV[2], ARGV[i])
    redis.call('ZADD', KEYS[2], 'XX', ARGV[1], tag_of(ARGV[i]))
    n = n + 1
  end
end
return n
