-- webhook_claim.lua: claim the webhook deliveries that are due. Each
-- claimed delivery gets the claim token and moves to now + lease in the due
-- set, so no other dispatcher takes it unless its holder dies mid-attempt.
-- With an endpoint list, only deliveries to those endpoints are claimed
-- (others are left for the servers that know their endpoint). A due
-- delivery whose endpoint was disabled by a 410 answer is failed instead.
--
-- KEYS[1]  due sorted set (id -> next attempt ms)
-- KEYS[2]  disabled endpoints hash (endpoint -> reason)
-- KEYS[3]  idx:pending      KEYS[4]  idx:failed
-- ARGV[1]  delivery hash key prefix
-- ARGV[2]  now (Unix ms; '' = the server's TIME)
-- ARGV[3]  lease (ms)       ARGV[4]  limit
-- ARGV[5]  claim token      ARGV[6]  retention (ms)
-- ARGV[7]  '1' to claim only the endpoints ARGV[8…], '0' for any endpoint
--
-- Returns one HGETALL reply (flat field, value array) per claimed delivery.
-- Members whose delivery is gone or no longer pending are dropped.

local now = tonumber(ARGV[2])
if not now then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local limit = tonumber(ARGV[4])
local leaseEnd = now + tonumber(ARGV[3])
local filter = ARGV[7] == '1'
local mine = {}
for i = 8, #ARGV do
  mine[ARGV[i]] = true
end
local out = {}
-- Deliveries of other servers' endpoints are skipped: scan in pages, at
-- most 1000 members per call.
local offset, page, scanned = 0, 100, 0
while #out < limit and scanned < 1000 do
  local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', offset, page)
  if #ids == 0 then
    break
  end
  scanned = scanned + #ids
  for _, id in ipairs(ids) do
    if #out >= limit then
      break
    end
    local key = ARGV[1] .. id
    local f = redis.call('HMGET', key, 'status', 'ep')
    if f[1] ~= 'pending' then
      redis.call('ZREM', KEYS[1], id)
      offset = offset - 1
    elseif (not filter) or mine[f[2]] then
      local reason = f[2] and redis.call('HGET', KEYS[2], f[2])
      if reason then
        redis.call('HSET', key, 'status', 'failed', 'err', 'endpoint disabled after 410 Gone: ' .. reason,
          'next', '', 'updated', now)
        redis.call('HDEL', key, 'claim')
        redis.call('ZREM', KEYS[1], id)
        redis.call('ZREM', KEYS[3], id)
        redis.call('ZADD', KEYS[4], now, id)
        redis.call('PEXPIRE', key, ARGV[6])
        offset = offset - 1
      else
        redis.call('HSET', key, 'claim', ARGV[5])
        -- Its score grows past now: it leaves the scanned range.
        redis.call('ZADD', KEYS[1], leaseEnd, id)
        out[#out + 1] = redis.call('HGETALL', key)
        offset = offset - 1
      end
    end
  end
  offset = offset + page
end
return out
