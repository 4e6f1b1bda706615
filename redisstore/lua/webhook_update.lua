-- webhook_update.lua: record the outcome of one delivery attempt, if the
-- caller still holds the claim. A pending delivery goes back into the due
-- set at its next attempt; a finished one leaves it, moves to its status
-- index and expires after the retention. Index entries of deliveries whose
-- retention passed are dropped.
--
-- KEYS[1]  delivery hash    KEYS[2]  due sorted set
-- KEYS[3]  idx:pending      KEYS[4]  idx:succeeded    KEYS[5]  idx:failed
-- KEYS[6]  disabled endpoints hash
-- ARGV[1]  delivery ID      ARGV[2]  claim token      ARGV[3]  status
-- ARGV[4]  attempts         ARGV[5]  last status code ARGV[6]  last error
-- ARGV[7]  next attempt (Unix ms; '' unless pending)
-- ARGV[8]  now (Unix ms)    ARGV[9]  retention (ms)
-- ARGV[10] endpoint         ARGV[11] disable reason ('' = none)
--
-- Returns 1, or 0 when the claim was lost (nothing changed).

if redis.call('HGET', KEYS[1], 'claim') ~= ARGV[2] then
  return 0
end
redis.call('HSET', KEYS[1], 'status', ARGV[3], 'attempts', ARGV[4], 'code', ARGV[5], 'err', ARGV[6],
  'next', ARGV[7], 'updated', ARGV[8])
redis.call('HDEL', KEYS[1], 'claim')
if ARGV[11] ~= '' then
  redis.call('HSET', KEYS[6], ARGV[10], ARGV[11])
end
if ARGV[3] == 'pending' then
  redis.call('ZADD', KEYS[2], ARGV[7], ARGV[1])
  redis.call('ZADD', KEYS[3], ARGV[8], ARGV[1])
  return 1
end
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('ZREM', KEYS[3], ARGV[1])
local idx = KEYS[4]
if ARGV[3] == 'failed' then
  idx = KEYS[5]
end
redis.call('ZADD', idx, ARGV[8], ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[9])
local old = '(' .. (tonumber(ARGV[8]) - tonumber(ARGV[9]))
redis.call('ZREMRANGEBYSCORE', KEYS[4], '-inf', old)
redis.call('ZREMRANGEBYSCORE', KEYS[5], '-inf', old)
return 1
