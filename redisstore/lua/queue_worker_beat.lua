-- queue_worker_beat.lua: record a live worker until now + ttl (Redis clock,
-- so workers with skewed clocks agree).
--
-- KEYS[1]  workers sorted set (member: worker ID, score: expiry Unix ms)
-- KEYS[2]  the worker's JSON key
-- ARGV[1]  worker ID           ARGV[2]  worker JSON      ARGV[3] ttl (ms)
--
-- Returns 1.

local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[3]), ARGV[1])
redis.call('SET', KEYS[2], ARGV[2], 'PX', ARGV[3])
return 1
