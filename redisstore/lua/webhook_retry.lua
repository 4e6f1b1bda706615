-- webhook_retry.lua: send a delivery again now (POST
-- /webhooks/deliveries/{id}/retry). A finished delivery becomes pending
-- with the manual flag (its next failure ends it), stops expiring, and its
-- endpoint is enabled again; a pending one just becomes due now, unless a
-- dispatcher is attempting it at this moment.
--
-- KEYS[1]  delivery hash    KEYS[2]  due sorted set
-- KEYS[3]  idx:pending      KEYS[4]  idx:succeeded    KEYS[5]  idx:failed
-- KEYS[6]  disabled endpoints hash
-- ARGV[1]  delivery ID      ARGV[2]  now (Unix ms)
--
-- Returns the delivery's HGETALL after the change; an error reply
-- "NOTFOUND …" if it does not exist.

if redis.call('EXISTS', KEYS[1]) == 0 then
  return redis.error_reply('NOTFOUND webhook delivery ' .. ARGV[1])
end
local st = redis.call('HGET', KEYS[1], 'status')
if st == 'pending' then
  if not redis.call('HGET', KEYS[1], 'claim') then
    redis.call('HSET', KEYS[1], 'next', ARGV[2], 'updated', ARGV[2])
    redis.call('ZADD', KEYS[2], ARGV[2], ARGV[1])
    redis.call('ZADD', KEYS[3], ARGV[2], ARGV[1])
  end
  return redis.call('HGETALL', KEYS[1])
end
redis.call('PERSIST', KEYS[1])
redis.call('HSET', KEYS[1], 'status', 'pending', 'next', ARGV[2], 'updated', ARGV[2], 'manual', '1')
local ep = redis.call('HGET', KEYS[1], 'ep')
if ep then
  redis.call('HDEL', KEYS[6], ep)
end
redis.call('ZREM', KEYS[4], ARGV[1])
redis.call('ZREM', KEYS[5], ARGV[1])
redis.call('ZADD', KEYS[3], ARGV[2], ARGV[1])
redis.call('ZADD', KEYS[2], ARGV[2], ARGV[1])
return redis.call('HGETALL', KEYS[1])
