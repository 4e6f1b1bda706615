-- queue_worker_list.lua: drop expired workers and return the live ones' IDs
-- (the caller reads their records with MGET: a script touches only the keys
-- it is given).
--
-- KEYS[1]  workers sorted set
--
-- Returns the IDs of the live workers.

local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
return redis.call('ZRANGE', KEYS[1], 0, -1)
