-- webhook_claim.lua: claim the webhook deliveries that are due. Each
-- claimed delivery gets the claim token and moves to now + lease in the due
-- set, so no other dispatcher takes it unless its holder dies mid-attempt.
--
-- KEYS[1]  due sorted set (id -> next attempt ms)
-- ARGV[1]  delivery hash key prefix   ARGV[2]  now (Unix ms)
-- ARGV[3]  lease (ms)                 ARGV[4]  limit
-- ARGV[5]  claim token
--
-- Returns one HGETALL reply (flat field, value array) per claimed delivery.
-- Members whose delivery is gone or no longer pending are dropped.

local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[2], 'LIMIT', 0, tonumber(ARGV[4]))
local leaseEnd = tonumber(ARGV[2]) + tonumber(ARGV[3])
local out = {}
for _, id in ipairs(ids) do
  local key = ARGV[1] .. id
  if redis.call('HGET', key, 'status') == 'pending' then
    redis.call('HSET', key, 'claim', ARGV[5])
    redis.call('ZADD', KEYS[1], leaseEnd, id)
    out[#out + 1] = redis.call('HGETALL', key)
  else
    redis.call('ZREM', KEYS[1], id)
  end
end
return out
