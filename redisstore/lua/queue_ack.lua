-- queue_ack.lua: acknowledge a queue entry and delete it, so the stream
-- holds only runs that are waiting or held by a worker.
--
-- KEYS[1]  queue stream
-- ARGV[1]  consumer group      ARGV[2]  entry ID
--
-- Returns the number of entries acknowledged (0 or 1).

local n = redis.call('XACK', KEYS[1], ARGV[1], ARGV[2])
redis.call('XDEL', KEYS[1], ARGV[2])
return n
