-- queue_worker_list.lua: drop expired workers and return the live ones.
--
-- KEYS[1]  workers sorted set
-- ARGV[1]  worker JSON key prefix ("{ns}:worker:")
--
-- Returns the JSON of each live worker, by worker ID.

local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local out = {}
for _, id in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
  local j = redis.call('GET', ARGV[1] .. id)
  if j then
    out[#out + 1] = j
  end
end
return out
