-- webhook_create.lua: add a webhook delivery unless it exists (deliveries
-- have stable IDs, so creating one twice, e.g. after a dispatcher died
-- before acknowledging its event, changes nothing). A delivery for an
-- endpoint disabled by a 410 answer is created failed.
--
-- KEYS[1]  delivery hash       KEYS[2]  due sorted set (id -> next attempt ms)
-- KEYS[3]  idx:pending         KEYS[4]  idx:failed
-- KEYS[5]  disabled endpoints hash (endpoint -> reason)
-- ARGV[1]  delivery ID         ARGV[2]  endpoint
-- ARGV[3]  now (Unix ms)       ARGV[4]  retention (ms)
-- ARGV[5…] field, value pairs of the delivery hash
--
-- Returns 1 (created pending), 2 (created failed: endpoint disabled) or 0
-- (it existed; nothing changed).

if redis.call('EXISTS', KEYS[1]) == 1 then
  return 0
end
local fields = {}
for i = 5, #ARGV do
  fields[#fields + 1] = ARGV[i]
end
redis.call('HSET', KEYS[1], unpack(fields))
local reason = redis.call('HGET', KEYS[5], ARGV[2])
if reason then
  redis.call('HSET', KEYS[1], 'status', 'failed', 'err', 'endpoint disabled: ' .. reason, 'next', '')
  redis.call('ZADD', KEYS[4], ARGV[3], ARGV[1])
  redis.call('PEXPIRE', KEYS[1], ARGV[4])
  return 2
end
redis.call('HSET', KEYS[1], 'status', 'pending', 'next', ARGV[3])
redis.call('ZADD', KEYS[2], ARGV[3], ARGV[1])
redis.call('ZADD', KEYS[3], ARGV[3], ARGV[1])
return 1
